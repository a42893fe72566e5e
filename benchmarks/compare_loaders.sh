#!/bin/bash
# The input pipeline table of benchmarks/README.md: each contender in turn,
# ROUNDS times (A B C A B C ...), so that all share the machine's conditions,
# with the load average before each round.
#
#   bash benchmarks/compare_loaders.sh ROOT TORCH_PYTHON [ROUNDS]
#
# ROOT: benchmarks/jpeg_folder.py's folder (ROOT/train/<class>/<jpegs>).
# TORCH_PYTHON: a python with torch, torchvision and Pillow (a scratch venv;
# not a vit_jax dependency). Grain runs in the current python. With
# BEFORE=DIR, DIR/benchmarks/vit_jax_loader.py (an older checkout with this
# script and cpu_time.py copied in) runs too, as "before".
# Each run is cut at 300 s (a hang shows as a missing line).
set -u
root=$1 torch_python=$2 rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
contenders=(
  "python $here/vit_jax_loader.py $root"
  "python $here/vit_jax_loader.py $root --threads=2"
  "$torch_python $here/torchvision_loader.py $root/train --workers=1"
  "$torch_python $here/torchvision_loader.py $root/train --workers=2"
  "python $here/grain_loader.py $root/train --workers=2"
  "python $here/grain_loader.py $root/train --workers=0 --threads=2"
  "python $here/grain_loader.py $root/train --workers=2 --ops=tf"
)
if [ -n "${BEFORE:-}" ]; then
  contenders+=("python $BEFORE/benchmarks/vit_jax_loader.py $root")
fi
last=$((${#contenders[@]} - 1))
for round in $(seq "$rounds"); do
  echo "round $round: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for i in "${!contenders[@]}"; do
    command=${contenders[$i]}
    line=$(timeout 300 $command 2>/dev/null | tail -1)
    label=$([ -n "${BEFORE:-}" ] && [ "$i" = "$last" ] && echo 'before: ')
    echo "  $label${line:-(no result: $command)}"
  done
done
