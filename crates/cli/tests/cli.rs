//! The `edgeinfer` binary end to end: the commands a user runs, on the default model.

use std::path::PathBuf;
use std::process::Command;

fn edgeinfer(args: &[&str]) -> std::process::Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(env!("CARGO_BIN_EXE_edgeinfer"))
        .args(args)
        .env("EDGEINFER_MODELS", root.join("models"))
        .current_dir(&root)
        .output()
        .expect("running edgeinfer")
}

#[test]
fn generate_json_greedy_is_reproducible_and_matches_the_reference_start() {
    let run = || {
        let out = edgeinfer(&[
            "generate",
            "-p",
            "The capital of France is",
            "-n",
            "4",
            "--temp",
            "0",
            "--json",
            "-t",
            "2",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let a = run();
    assert_eq!(
        a["prompt_ids"],
        serde_json::json!([504, 3575, 282, 4649, 314])
    );
    // The reference greedy continuation starts " Paris." (ids 7042, 30); 8-bit activations
    // keep that margin.
    assert_eq!(a["generated_ids"][0], 7042);
    assert!(a["text"].as_str().unwrap().starts_with(" Paris"));
    assert_eq!(a["generated_ids"].as_array().unwrap().len(), 4);
    assert!(a["timings"]["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert_eq!(a["generated_ids"], run()["generated_ids"]);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let run = |seed: &str| {
        let out = edgeinfer(&[
            "generate",
            "-p",
            "Once upon a time",
            "-n",
            "12",
            "--temp",
            "1.0",
            "--seed",
            seed,
            "--json",
        ]);
        assert!(out.status.success());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["generated_ids"].clone()
    };
    assert_eq!(run("7"), run("7"));
}

#[test]
fn tokenize_and_score() {
    let out = edgeinfer(&["tokenize", "Hello, world!"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "19556 28 905 17"
    );
    let out = edgeinfer(&[
        "score",
        "--ids",
        "504,3575,282,4649,314",
        "--top",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pos = v["positions"].as_array().unwrap();
    assert_eq!(pos.len(), 5);
    assert_eq!(pos[0]["top"].as_array().unwrap().len(), 3);
    assert!(pos[0]["next_logprob"].as_f64().unwrap() < 0.0);
    assert!(pos[4]["next_logprob"].is_null());
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let cases: &[(&[&str], &str)] = &[
        (&["inspect", "Cargo.toml"], "not a GGUF file"),
        (
            &["generate", "-m", "no/such.gguf", "-p", "x"],
            "no/such.gguf",
        ),
        (&["score", "--ids", "1,999999"], "outside the vocabulary"),
        (&["score", "--ids", "1,x"], "not a token id"),
        (&["generate", "-p", "", "-n", "1"], "empty"),
        (&["inspect", "--tensor", "nope"], "nope"),
    ];
    for (args, needle) in cases {
        let out = edgeinfer(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

fn text_data() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/fetch-text-data.sh"))
        .output()
        .expect("running scripts/fetch-text-data.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn classify_with_the_lstm_fixture_and_zero_shot() {
    let out = edgeinfer(&[
        "classify",
        "-m",
        "fixtures/lstm/sms.q8_0.gguf",
        "URGENT! You have WON a free prize. Call 09061701461 now to claim",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("spam\t"), "{text}");
    // Probabilities of both labels, summing to one.
    let total: f64 = text
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-3, "{text}");

    // A batch file with labels: throughput and accuracy on stderr, one prediction per row.
    let test = text_data().join("sms/test.csv");
    let out = edgeinfer(&[
        "classify",
        "-m",
        "fixtures/lstm/sms.q8_0.gguf",
        "--file",
        test.to_str().unwrap(),
        "--label-col",
        "label",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 452);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("texts/s") && err.contains("accuracy"), "{err}");

    // The decoder as a zero-shot classifier: both labels scored, probabilities sum to one.
    let out = edgeinfer(&[
        "classify",
        "--labels",
        "positive,negative",
        "--json",
        "A wonderful, moving film.",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["probs"];
    let sum = p["positive"].as_f64().unwrap() + p["negative"].as_f64().unwrap();
    assert!((sum - 1.0).abs() < 1e-9, "{v}");

    // With a prior the label scores are calibrated so that each label takes its share of the
    // file's texts: 3:1 over 20 texts is 15 and 5.
    let dir = std::env::temp_dir().join(format!("edgeinfer-prior-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("twenty.csv");
    let rows: String = (0..20)
        .map(|i| format!("\"Message number {i}: call {} now\"\n", 1000 + i * 37))
        .collect();
    std::fs::write(&file, format!("text\n{rows}")).unwrap();
    let out = edgeinfer(&[
        "classify",
        "--labels",
        "normal,spam",
        "--prior",
        "3,1",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let spam = text.lines().filter(|l| l.starts_with("spam\t")).count();
    assert_eq!((text.lines().count(), spam), (20, 5), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compare_writes_a_table_and_a_chart() {
    let dir = std::env::temp_dir().join(format!("edgeinfer-cli-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("c.svg");
    let md = dir.join("c.md");
    let data = text_data();
    let out = edgeinfer(&[
        "compare",
        "--lstm",
        "fixtures/lstm/sms.q8_0.gguf",
        "--test",
        data.join("sms/test.csv").to_str().unwrap(),
        "--calibrate",
        data.join("sms/train.csv").to_str().unwrap(),
        "--limit",
        "60",
        "--decoder-limit",
        "3",
        "--steps",
        "48",
        "--svg",
        svg.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(&md).unwrap();
    for row in [
        "LSTM f32",
        "LSTM int8 (Q8_0)",
        "LSTM int4 (Q4_0)",
        "zero-shot",
    ] {
        assert!(table.contains(row), "{table}");
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("polyline"),
        "{}",
        &chart[..200.min(chart.len())]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn classifier_input_errors_are_clear() {
    let dir = std::env::temp_dir().join(format!("edgeinfer-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_utf8 = dir.join("bad.csv");
    std::fs::write(&bad_utf8, b"text,label\n\"ok\",ham\n\"caf\xe9\",spam\n").unwrap();
    let no_col = dir.join("nocol.csv");
    std::fs::write(&no_col, "body,label\nhello,ham\n").unwrap();
    let ok = dir.join("ok.csv");
    std::fs::write(&ok, "text,label\nhello,ham\nbuy now,spam\n").unwrap();
    let bad_json = dir.join("bad.jsonl");
    std::fs::write(&bad_json, "{\"text\": \"a\", \"label\": \"x\"}\n{oops\n").unwrap();
    let m = "fixtures/lstm/sms.q8_0.gguf";
    let ok_path = ok.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["classify", "-m", m, "--file", bad_utf8.to_str().unwrap()],
            "line 3: invalid UTF-8",
        ),
        (
            vec!["classify", "-m", m, "--file", no_col.to_str().unwrap()],
            "no column \"text\"",
        ),
        (
            vec!["classify", "-m", m, "--file", bad_json.to_str().unwrap()],
            "line 2",
        ),
        (vec!["classify", "-m", m], "give a text"),
        (
            vec!["classify", "-m", m, "--labels", "a,b", "x"],
            "differ from the classifier's labels",
        ),
        (vec!["classify", "-m", "Cargo.toml", "x"], "Cargo.toml"),
        (
            vec!["classify", "-m", m, "--prior", "1,3", "x"],
            "--prior applies to a decoder used zero-shot",
        ),
        (
            vec!["classify", "--labels", "a,b", "--prior", "1,3", "x"],
            "give them with --file",
        ),
        (
            vec![
                "classify", "--labels", "a,b", "--prior", "1", "--file", ok_path,
            ],
            "a prior of 1 shares for 2 labels",
        ),
        (
            vec![
                "classify", "--labels", "a,b", "--prior", "1,-2", "--file", ok_path,
            ],
            "the prior share of label \"b\" is -2",
        ),
        (
            vec![
                "train-lstm",
                "--train",
                no_col.to_str().unwrap(),
                "--valid",
                no_col.to_str().unwrap(),
                "--out",
                "/dev/null",
            ],
            "no column \"text\"",
        ),
        (
            vec![
                "train-lstm",
                "--train",
                ok.to_str().unwrap(),
                "--valid",
                ok.to_str().unwrap(),
                "--out",
                "/dev/null",
                "--embeddings-from",
                "fixtures/lstm/tiny.gguf",
            ],
            "--embeddings-from fixtures/lstm/tiny.gguf",
        ),
    ];
    for (args, needle) in cases {
        let out = edgeinfer(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    // Empty and huge texts (here 6 MB, a million words) are classified, not refused.
    let out = edgeinfer(&["classify", "-m", m, ""]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let huge = dir.join("huge.csv");
    std::fs::write(
        &huge,
        format!("text\n\"{}\"\n\"\"\n", "word ".repeat(1_000_000)),
    )
    .unwrap();
    let out = edgeinfer(&["classify", "-m", m, "--file", huge.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    std::fs::remove_dir_all(&dir).ok();
}
