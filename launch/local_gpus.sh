#!/usr/bin/env bash
# Train on one machine with all its GPUs: one process; jax sees every local GPU and the
# train step splits each global batch over them (config.batch_size must be divisible by
# the number of GPUs).
#
#   launch/local_gpus.sh CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   launch/local_gpus.sh configs/grcl.py runs/grcl --config.model.dtype=bfloat16
#
# Needs the GPU build of jax: pip install -e '.[cuda]'. CUDA_VISIBLE_DEVICES picks GPUs.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=python3

# Let XLA take GPU memory as it needs it rather than 75% up front (other jobs may share the
# GPU), and overlap the data-parallel all-reduce with the backward pass.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"

"$python" -c 'import jax; print(f"jax {jax.__version__}: {jax.device_count()} device(s): {jax.devices()}")'
exec "$python" -m grcnn_jax.main --config="$config" --workdir="$workdir" "$@"
