#!/usr/bin/env bash
# Train on one machine with all its GPUs: one process; jax sees every local GPU and the train
# step splits each global batch over them along the mesh's 'data' axis (config.batch_size is
# global and must be divisible by the number of GPUs). Running it again resumes.
#
# Needs the CUDA build of jax: .venv/bin/pip install -e '.[cuda]'.
set -euo pipefail

usage() {
  cat <<EOF
usage: $0 CONFIG WORKDIR [--config.FIELD=VALUE ...] [other grcnn_jax.main flags]

  launch/local_gpus.sh configs/grcl.py runs/grcl
  launch/local_gpus.sh configs/grcl.py runs/grcl --config.batch_size=192 --config.model.dtype=bfloat16
  CUDA_VISIBLE_DEVICES=0,1 launch/local_gpus.sh configs/quickstart.py runs/qs --config.data.num_workers=8

Environment: PYTHON (default: the checkout's .venv/bin/python, else python3),
CUDA_VISIBLE_DEVICES (which GPUs), XLA_FLAGS (appended after this script's, so they win),
XLA_PYTHON_CLIENT_PREALLOCATE=false (if other processes share the GPUs),
GRCNN_ALLOW_CPU=1 (run even if jax sees no GPU).
EOF
}

if [[ $# -ge 1 && ( $1 == -h || $1 == --help ) ]]; then
  usage
  exit 0
fi
if [[ $# -lt 2 ]]; then
  usage >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
if [[ ! -f $config ]]; then
  echo "$0: no config file '$config'" >&2
  exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x $repo/.venv/bin/python ]]; then python=$repo/.venv/bin/python; else python=python3; fi
fi

# XLA on GPUs: the latency-hiding scheduler overlaps the data-parallel gradient all-reduce
# with the rest of the backward pass (it matters with several GPUs, costs nothing with one).
export XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true${XLA_FLAGS:+ $XLA_FLAGS}"
export PYTHONUNBUFFERED=1

gpus=$("$python" -c 'import jax; print(sum(d.platform == "gpu" for d in jax.devices()))')
if [[ $gpus -eq 0 && ${GRCNN_ALLOW_CPU:-0} != 1 ]]; then
  echo "$0: jax sees no GPU ($("$python" -c 'import jax; print(jax.devices())')). Install the" \
       "CUDA build: $python -m pip install -e '${repo}[cuda]' (or GRCNN_ALLOW_CPU=1 to run anyway)" >&2
  exit 1
fi
echo "$0: $gpus GPU(s); XLA_FLAGS=$XLA_FLAGS" >&2
exec "$python" -m grcnn_jax.main --config="$config" --workdir="$workdir" "$@"
