r"""This project's train input pipeline on an image folder, timed alone.

  python benchmarks/vit_jax_loader.py ROOT [--threads=N] [--batches=15]

ROOT/train/<class>/<images> (e.g. `benchmarks/jpeg_folder.py`'s folder).
`input_pipeline.train_iterator` as the trainer builds it for
`configs/common.base_config()` with `dataset=imagefolder`: inception crop
to 224 (the fused JPEG decode-and-crop), flip, float32 in [-1, 1], batches
of 64, on the host (no device copy; `python -m vit_jax.benchmark --input`
times it with the copy, next to the train step). `--threads` sets
`config.data_threads` (0: the project's default for this host). Prints
images/s over `--batches` batches after 2 warm-up batches, and images per
CPU-second of the process (`cpu_time.py`), the line the torchvision and
Grain scripts print.
"""
import argparse
import os
import sys

import cpu_time  # benchmarks/cpu_time.py, beside this script.

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # The repository, for vit_jax.
from vit_jax.configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from vit_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('root', help='ROOT/train/<class>/<images>')
  parser.add_argument('--threads', type=int, default=0)
  parser.add_argument('--batches', type=int, default=15)
  parser.add_argument('--batch_size', type=int, default=64)
  args = parser.parse_args()
  config = common.base_config()
  config.update(dataset='imagefolder', data_dir=args.root,
                batch_size=args.batch_size, data_threads=args.threads)
  threads = input_pipeline.data_threads(config)
  batches = input_pipeline.train_iterator(config, start_step=0)
  print(cpu_time.time_batches(
      f'vit_jax data_threads={threads}' + (' (default)' if not args.threads
                                           else ''),
      batches, args.batches, args.batch_size, warmup=2))


if __name__ == '__main__':
  main()
