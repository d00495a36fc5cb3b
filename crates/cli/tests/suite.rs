//! `edgeinfer compare --suite` end to end on small splits: every contender runs, the report's
//! numbers follow from the raw results (recomputed here independently), a second run reuses
//! every cached result, and bad data is refused with the file and the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn edgeinfer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgeinfer"))
        .args(args)
        .env("EDGEINFER_MODELS", root().join("models"))
        .current_dir(root())
        .output()
        .expect("running edgeinfer")
}

fn text_data() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/fetch-text-data.sh"))
        .output()
        .expect("running scripts/fetch-text-data.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn raw_results(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut v: Vec<(PathBuf, Value)> = std::fs::read_dir(dir.join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p, v)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn suite_runs_every_contender_and_its_report_follows_from_the_raw_results() {
    let dir = std::env::temp_dir().join(format!("edgeinfer-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = text_data();
    let args = [
        "compare",
        "--suite",
        "--tasks",
        "sms,trec,imdb->rt",
        "--decoders",
        "smollm2",
        "--test-limit",
        "12",
        "--train-limit",
        "24",
        "--max-text-tokens",
        "64",
        "--steps",
        "16",
        "-t",
        "2",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ];
    let out = edgeinfer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let raw = raw_results(&dir);

    // Every contender on every task; zero-shot only where it differs from a crossed row.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, v) in &raw {
        let task = v["job"]["task"].as_str().unwrap().to_string();
        seen.entry(task)
            .or_default()
            .push(v["job"]["name"].as_str().unwrap().to_string());
    }
    for task in ["sms", "trec", "imdb->rt"] {
        let names = &seen[task];
        let want = [
            "Naive Bayes",
            "LSTM f32",
            "LSTM int8",
            "LSTM int4",
            "few-shot",
            "probe",
        ];
        for w in want {
            assert!(
                names.iter().any(|n| n.contains(w)),
                "{task}: {w} in {names:?}"
            );
        }
        assert_eq!(
            names.iter().any(|n| n.contains("zero-shot")),
            task != "imdb->rt",
            "{task}: {names:?}"
        );
        assert!(report.contains(&format!("## {task}")), "{report}");
    }
    assert!(seen["steps"].len() >= 4, "{:?}", seen["steps"]);

    // The report's numbers, recomputed from each raw result.
    for (path, v) in raw.iter().filter(|(_, v)| v["job"]["task"] != "steps") {
        let labels = strings(&v["labels"]);
        let (truth, pred) = (strings(&v["truth"]), strings(&v["pred"]));
        assert_eq!(truth.len(), 12, "{}", path.display());
        assert_eq!(pred.len(), truth.len());
        assert!(pred.iter().all(|p| labels.contains(p)), "{pred:?}");
        let right = truth.iter().zip(&pred).filter(|(t, p)| t == p).count();
        let acc = right as f64 / truth.len() as f64;
        let mut f1 = 0.0;
        for l in &labels {
            let tp = truth
                .iter()
                .zip(&pred)
                .filter(|(t, p)| *t == l && *p == l)
                .count() as f64;
            let pp = pred.iter().filter(|p| *p == l).count() as f64;
            let ap = truth.iter().filter(|t| *t == l).count() as f64;
            if tp > 0.0 {
                f1 += 2.0 * tp / (pp + ap);
            }
        }
        f1 /= labels.len() as f64;
        let name = v["job"]["name"].as_str().unwrap();
        let task = v["job"]["task"].as_str().unwrap();
        let section = report.split(&format!("## {task}\n")).nth(1).unwrap();
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("{task} · {name} not in the report:\n{report}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "12", "{row}");
        assert_eq!(cells[3], format!("{:.1} %", 100.0 * acc), "{row}");
        assert_eq!(cells[4], format!("{f1:.3}"), "{row}");
        let lat = v["latency_ms"].as_array().unwrap();
        assert_eq!(lat.len(), 12);
        assert!(v["batch_secs"].as_f64().unwrap() > 0.0);
        assert!(v["model_bytes"].as_u64().unwrap() > 0);
    }
    // The floor and the LSTM really classify SMS (ham is 87 %: the first 12 test texts are
    // no test of much more than that, but a broken classifier falls below).
    for (_, v) in &raw {
        let name = v["job"]["name"].as_str().unwrap();
        if v["job"]["task"] == "sms" && (name.contains("Naive") || name.contains("LSTM")) {
            let (t, p) = (strings(&v["truth"]), strings(&v["pred"]));
            let right = t.iter().zip(&p).filter(|(a, b)| a == b).count();
            assert!(right >= 10, "{name}: {right}/12");
        }
    }
    // A probe was fitted per training set, naming its decoder's file and hash.
    let probes: Vec<PathBuf> = std::fs::read_dir(dir.join("probes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(probes.len(), 3, "{probes:?}");
    let sha = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
    for p in &probes {
        let head = edgeinfer(&["inspect", p.to_str().unwrap(), "--json"]);
        let s = String::from_utf8_lossy(&head.stdout);
        assert!(s.contains(sha), "{s}");
    }
    for svg in ["pareto.svg", "steps.svg"] {
        let s = std::fs::read_to_string(dir.join(svg)).unwrap();
        assert!(s.starts_with("<svg"), "{svg}");
    }

    // Resumed: every result comes from the cache, unchanged, and the report is the same.
    let stamps: Vec<_> = raw
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    let again = edgeinfer(&args);
    assert!(again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.matches(": cached (").count(), raw.len(), "{err}");
    let after: Vec<_> = raw_results(&dir)
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    assert_eq!(stamps, after);
    assert_eq!(
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        report
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn suite_refuses_bad_data_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("edgeinfer-suite-bad-{}", std::process::id()));
    let write = |train: &str, valid: &str, test: &str| {
        let d = dir.join("sms");
        std::fs::create_dir_all(&d).unwrap();
        for (f, body) in [("train", train), ("valid", valid), ("test", test)] {
            std::fs::write(d.join(format!("{f}.csv")), format!("text,label\n{body}")).unwrap();
        }
    };
    let run = || {
        let out = edgeinfer(&[
            "compare",
            "--suite",
            "--tasks",
            "sms",
            "--data",
            dir.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let two = "hi there,ham\nwin cash now,spam\n";
    write(two, two, "");
    let e = run();
    assert!(e.contains("sms/test.csv: the split is empty"), "{e}");
    write("a,ham\nb,ham\n", "a,ham\n", "a,ham\n");
    let e = run();
    assert!(
        e.contains(
            "sms/train.csv: a classifier needs two or more classes; the labels are [\"ham\"]"
        ),
        "{e}"
    );
    write(two, two, "what,maybe\n");
    let e = run();
    assert!(
        e.contains("sms/test.csv: label \"maybe\" does not occur in the training set"),
        "{e}"
    );
    write(two, two, "x,\n");
    let e = run();
    assert!(e.contains("an example has an empty label"), "{e}");
    let out = edgeinfer(&["compare", "--suite", "--tasks", "nope"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("unknown task \"nope\""), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn train_probe_writes_a_probe_that_classify_uses_and_checks() {
    let dir = std::env::temp_dir().join(format!("edgeinfer-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = text_data();
    // The first rows of the SMS splits (spam is 13 %: take enough rows to hold some).
    let head = |split: &str, n: usize| {
        let text = std::fs::read_to_string(data.join(format!("sms/{split}.csv"))).unwrap();
        let mut rdr_rows = Vec::new();
        let mut rest = text.as_str();
        // Rows may hold quoted newlines: cut at a newline followed by a row that parses as
        // one more record, by counting quotes.
        while rdr_rows.len() <= n && !rest.is_empty() {
            let mut quotes = 0;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                if c == '"' {
                    quotes += 1;
                }
                if c == '\n' && quotes % 2 == 0 {
                    end = i + 1;
                    break;
                }
            }
            rdr_rows.push(&rest[..end]);
            rest = &rest[end..];
        }
        let p = dir.join(format!("{split}.csv"));
        std::fs::write(&p, rdr_rows.concat()).unwrap();
        p
    };
    let (train, valid, test) = (head("train", 80), head("valid", 20), head("test", 24));
    let probe = dir.join("sms-probe.gguf");
    let out = edgeinfer(&[
        "train-probe",
        "--train",
        train.to_str().unwrap(),
        "--valid",
        valid.to_str().unwrap(),
        "--out",
        probe.to_str().unwrap(),
        "--max-text-tokens",
        "64",
        "-t",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 labels, 576 features"), "{said}");
    let out = edgeinfer(&[
        "classify",
        "-m",
        probe.to_str().unwrap(),
        "--file",
        test.to_str().unwrap(),
        "--label-col",
        "label",
        "-t",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let acc: f64 = err
        .split("accuracy ")
        .nth(1)
        .and_then(|s| s.trim().trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(acc >= 80.0, "{err}");
    // Another decoder than the one it was trained on is refused, naming both.
    let out = edgeinfer(&[
        "classify",
        "-m",
        probe.to_str().unwrap(),
        "--decoder",
        "fixtures/decoder/llama-q8_0.gguf",
        "hello",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was trained on SmolLM2-135M-Instruct.Q4_1.gguf") && err.contains("but"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
