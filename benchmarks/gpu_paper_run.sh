#!/usr/bin/env bash
# The paper's recipe on one GPU, JAX backend, through the numpy loader (no TensorFlow there).
# Run from the repo root on the GPU machine, with the keras/namex/optree wheels (and, as the
# shards are read by protobuf, the protobuf and google-crc32c wheels) in .whl/ and
# a `kanime prepare --faces --labels` output of getchu-faces-128 in data/getchu:
#   bash benchmarks/gpu_paper_run.sh OUT_DIR TRAIN_SECONDS [KEY=VALUE ...]
# (recipe overrides for the training run; SKIP_STEP_BENCH=1 skips the step timings, which run
# in float32 and in mixed_bfloat16)
# The training process is stopped with SIGTERM after TRAIN_SECONDS; backups every 500 steps.
# Writes OUT_DIR/train_step_gpu.json (step time, XLA FLOPs, peak memory), OUT_DIR/metrics.jsonl
# (the run's losses and images/s), OUT_DIR/smi.csv (GPU memory and utilisation every 15 s) and
# the first, middle and last sample grids (not for committing: it is made from the getchu faces).
set -uo pipefail
out=${1:?OUT_DIR}; seconds=${2:-400}; shift 2; overrides=("$@")
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
if [ -z "${SKIP_STEP_BENCH:-}" ]; then
  python3 benchmarks/train_step.py --backends jax --steps 20 --out "$out/train_step_gpu.json"
  python3 benchmarks/train_step.py --backends jax --steps 20 --out "$out/train_step_gpu_bf16.json" \
    --set training.mixed_precision=mixed_bfloat16
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # so nvidia-smi shows what the run really uses
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -l 15 >"$out/smi.csv" &
smi=$!
rm -rf /tmp/run  # a warm machine may hold an earlier call's run
timeout -s TERM "$seconds" python3 -c "
import sys
from kanime.training.fit import fit
fit('recipes/getchu-paper.yaml', run_dir='/tmp/run', progress=False, overrides=[
    'data.path=data/getchu', 'logging.image_every=500', 'logging.backup_every=500',
    'logging.export_every=500', *sys.argv[1:]])
" "${overrides[@]}"
kill $smi
cp /tmp/run/logs/metrics.jsonl "$out/"
mapfile -t grids < <(ls /tmp/run/samples); n=${#grids[@]}
for i in 0 $((n / 2)) $((n - 1)); do cp "/tmp/run/samples/${grids[$i]}" "$out/"; done
