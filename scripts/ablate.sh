#!/bin/bash
# The decoder study (docs/ablation.md): every row trains on the same data.synth build for the same
# training time (trainer.max_minutes, summed over legs; rerun to resume), bf16 autocast on 2 CPU
# threads. Usage: scripts/ablate.sh DATA OUT ROW...   rows: frame frame_nolatent frame_unpaired
# wavenet wavenet_corrupt wavenet_excite. Each row's run is OUT/ROW, its export OUT/ROW.pt.
set -euo pipefail
data=$1 out=$2
shift 2
minutes=${MINUTES:-12}
# STEPS=N: a budget of N steps instead of minutes (rows compared while other jobs share the CPU)
budget=(trainer.max_minutes="$minutes")
[[ -n ${STEPS:-} ]] && budget=(trainer.max_minutes=0 trainer.max_steps="$STEPS")
py=${PYTHON:-.venv/bin/python}
for row in "$@"; do
  case $row in
    frame) args=(model=frame) ;;
    frame_nolatent) args=(model=frame "model.condition=[{name: notes, feature: notes},{name: loud, feature: loudness, hop: 160}]") ;;
    frame_unpaired) args=(model=frame data.paired=0) ;;
    wavenet) args=(model=wavenet511) ;;
    wavenet_corrupt) args=(model=wavenet511 model.decoder.corrupt=0.25) ;;
    wavenet_excite) args=(model=wavenet511 model.decoder.corrupt=0.25 "model.condition=[{name: z, feature: latent},{name: notes, feature: notes},{name: sine, feature: excitation}]") ;;
    *) echo "unknown row: $row" >&2; exit 2 ;;
  esac
  # the row's own settings come last: they override the common ones
  OMP_NUM_THREADS=2 "$py" -m umt.train data.root="$data" data.cache_dir="$data/../cache" \
    data.segment=16000 data.batch_per_domain=2 data.paired=0.5 data.val_segments=2 \
    trainer.threads=2 trainer.device=cpu trainer.precision=bf16 "${budget[@]}" \
    trainer.checkpoint_every=100 trainer.val_every=200 trainer.log_every=20 trainer.progress=false \
    "${args[@]}" hydra.run.dir="$out/$row"
  pitch=()
  [[ $row != wavenet && $row != wavenet_corrupt ]] && pitch=(--pitch tracker)
  "$py" -m umt.export "$out/$row" -o "$out/$row.pt" "${pitch[@]}"
done
