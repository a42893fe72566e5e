#!/usr/bin/env bash
# The GPU figures of the performance issue in one device call (an H100 or
# H200 as lent by the device tool; about 5-8 minutes).
#
# The lent machine has jax with CUDA, flax, optax and absl, but no
# ml_collections (and no TensorFlow, which the benchmark does not import).
# Here, once:  echo /.whl/ >> .git/info/exclude && python3 -m pip download \
#   --no-deps --only-binary=:all: --python-version 3.12 -d .whl ml-collections==1.1.0
# Device call (carry .whl):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD && bash benchmarks/gpu_check.sh "$OUT"
# Each run appends the benchmark's JSON record to OUT/gpu_check.jsonl.
set -uo pipefail
out="${1:-.}"
mkdir -p "$out"

run() {
  echo "== $*" >&2
  python3 -m vit_jax.benchmark "$@" 2>>"$out/gpu_check.err" | tail -n 1 \
      | tee -a "$out/gpu_check.jsonl"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import jax; print(jax.__version__, jax.devices())'
run --model=ViT-B_16 --batch_size=256 --mode=train --dtype=bfloat16 --steps=20
run --model=ViT-B_16 --batch_size=256 --mode=train --dtype=bfloat16 --steps=20 --scan
run --model=ViT-B_16 --batch_size=128 --mode=train --dtype=float32 --steps=10
run --model=ViT-B_16 --batch_size=512 --mode=infer --dtype=bfloat16 --steps=20
run --model=ViT-L_16 --batch_size=256 --mode=infer --dtype=bfloat16 --steps=20
run --model=ViT-L_16 --batch_size=64 --mode=train --dtype=bfloat16 --steps=10 --scan
