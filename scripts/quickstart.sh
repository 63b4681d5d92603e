#!/usr/bin/env bash
# The whole UTS Studio flow on the demo corpus, at CPU size (~2-3 min on 2 cores): a table of contents, one step
# per command. Usage: scripts/quickstart.sh [WORK_DIR]   (default data/quickstart; never touches data/uts.duckdb)
# Knobs (environment): PYTHON (default .venv/bin/python), CLIPS, MERGES, K, STEPS, SHARED_DATA (default ../shared/data).
set -euo pipefail
trap 'echo "quickstart: FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

WORK=${1:-data/quickstart}
if [ -n "$(ls -A "$WORK" 2>/dev/null)" ]; then
  echo "quickstart: $WORK is not empty; remove it or pass another folder" >&2; exit 1
fi
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)    # absolute, before moving to the project root
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
command -v "$PY" >/dev/null || { echo "quickstart: no python at $PY (run 'make install' or set PYTHON)" >&2; exit 1; }
DATA=${SHARED_DATA:-../shared/data}
CLIPS=${CLIPS:-200} MERGES=${MERGES:-3} K=${K:-50} STEPS=${STEPS:-40}
DB=$WORK/uts.duckdb EXPORT=$WORK/exports/v$K RUN=$WORK/runs/mtc_tiny_k$K

# 1. Demo corpus: synthesised audio + simulated captioner with untidy tags -> $DB (audio in $WORK/uts_demo).
"$PY" -m curation demo --db "$DB" --clips "$CLIPS"

# 2. Merge suggestions (surface variants, plurals, synonyms), as on the Vocabulary page -> suggestions.json.
"$PY" -m curation suggest-merges --db "$DB" --top "$MERGES" --json > "$WORK/suggestions.json"

# 3. Accept each one: a logged, attributed decision (Vocabulary page > Decisions). Demo tags hold no spaces.
"$PY" -c 'import json, sys; [print(g["canonical"], *g["tags"]) for g in json.load(open(sys.argv[1]))]' \
    "$WORK/suggestions.json" | while read -r into tags; do
  "$PY" -m curation decide merge $tags --into "$into" --db "$DB" --by quickstart --reason "quickstart: top suggestion"
done

# 4. Export the top-K vocabulary: label_K.json + cuts.jsonl.gz + export.json (the training contract).
"$PY" -m curation export --db "$DB" --k "$K" --out "$EXPORT" --by quickstart

# 5. Tiny MTC pre-training on the export (small batches so it fits a CPU) -> metrics.jsonl, checkpoints/.
"$PY" -m training.pretrain --export "$EXPORT" --out "$RUN" --objective mtc --size tiny --steps "$STEPS" \
    --device cpu --set max_batch_s=40

# 6. Probe the frozen encoder on a real task: ESC-10 (80 clips, 10 classes, grouped by source recording).
if [ -f "$DATA/esc50/esc50_subset.csv" ]; then
  "$PY" - "$DATA/esc50" "$WORK/esc10.csv" <<'EOF'
import csv, sys
from pathlib import Path
esc, out = Path(sys.argv[1]).resolve(), sys.argv[2]
rows = [r for r in csv.DictReader(open(esc / "esc50_subset.csv")) if r["esc10"] == "True"]
with open(out, "w", newline="") as handle:
    csv.writer(handle).writerows([("audio_path", "label", "group")] +
                                 [(esc / "audio" / r["filename"], r["category"], r["src_file"]) for r in rows])
EOF
  "$PY" -m training.probe --checkpoint "$RUN" --task "$WORK/esc10.csv" --out "$RUN"   # -> results.jsonl
else
  echo "quickstart: probe skipped: $DATA/esc50 not found (real audio lives beside the project in ../shared/data)"
fi

# 7. Import the run directory into the database: curves, per-tag AP, probe results, lineage to the export.
"$PY" -m curation runs import "$RUN" --db "$DB"

# 8. Where to look.
cat <<EOF

quickstart: done in ${SECONDS}s. Everything is under $WORK ($STEPS steps: a smoke run, not a result).
  make demo DB=$DB      # from the project root; then open http://127.0.0.1:8501
  Vocabulary page: the merges accepted above (Decisions) and the K explorer.
  Runs page: run $(basename "$RUN"): curve, probe results, lineage export -> decisions.
  Compare runs page: its settings and probes (random-init and fbank baselines beside).
EOF
