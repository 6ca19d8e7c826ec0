#!/usr/bin/env bash
# Train your own model end to end on CPU, in a few minutes (`make train-demo`):
#   1. render a small paired dataset (piano, violin) from Bach chorales with fluidsynth,
#   2. train the `tiny` model on it (resumable: rerun to continue),
#   3. export it, translate a held-out violin clip to piano, and score it against baselines.
# A tiny model trained for minutes sounds rough: this proves the pipeline, not the quality.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${DEMO_DIR:-demo}
STEPS=${DEMO_STEPS:-200}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== 1/4 dataset: $OUT/data"
$PY -m data.synth --out "$OUT/data" --instruments piano,violin --soundfont fluidr3 \
    --sources bach --hours 0.1 --max-seconds 30 --voices soprano --seed 0 --jobs 2

echo "== 2/4 training tiny for $STEPS steps: $OUT/run (TensorBoard: tensorboard --logdir $OUT/run/tb)"
$PY -m umt.train model=tiny data.root="$OUT/data" data.segment=8000 data.batch_per_domain=4 \
    trainer.max_steps="$STEPS" trainer.device=cpu trainer.checkpoint_every=50 \
    trainer.val_every=50 hydra.run.dir="$OUT/run"

echo "== 3/4 export and translate"
$PY -m umt.export "$OUT/run" -o "$OUT/tiny.pt"
clip=$(find "$OUT/data/violin/test" -name '*__soprano.wav' | sort | head -n 1)
$PY translate.py "$clip" --to piano --model "$OUT/tiny.pt" -o "$OUT/translated" --plot

echo "== 4/4 evaluation against the identity and transcribe-then-render baselines"
$PY -m evaluation --model "$OUT/tiny.pt" --data "$OUT/data" --pairs violin:piano -n 2 \
    --seconds 4 --out "$OUT/eval"
echo
echo "translation: $OUT/translated/ (wav + spectrogram png); report: $OUT/eval/report.md, listening page $OUT/eval/report.html"
