r"""Grain (google/grain) on the input benchmark's image folder, timed alone.

  python benchmarks/grain_loader.py ROOT/train [--workers=2] [--threads=1] \
      [--ops=pil|tf] [--batches=15]

The same work per image as `vit_jax_loader.py` and `torchvision_loader.py`:
inception crop (area 0.08-1, aspect ratio 3/4-4/3, 10 tries, else the whole
image) to 224, random horizontal flip, float32 in [-1, 1], batches of 64.
Pipeline: `grain.MapDataset` over the (file, label) list, shuffled, repeated,
`random_map` (seeded per element) for the crop, batched, then
`mp_prefetch` over `--workers` processes (0: none), each reading
`--threads` batches at a time (`grain.ReadOptions`). `--ops=pil` decodes,
crops and resizes with Pillow (as torchvision does); `--ops=tf` with the ops
vit_jax uses (`tf.image.decode_and_crop_jpeg`, bilinear resize), which
separates Grain's own cost from the image ops'. Prints images/s over
`--batches` batches after `--warmup` batches, and images per CPU-second of
the process and its workers (`cpu_time.py`). Grain is not a vit_jax
dependency.
"""
import argparse
import math
import os

from absl import flags
import cpu_time  # benchmarks/cpu_time.py, beside this script.
import grain
import numpy as np
from PIL import Image

_SIZE = 224
_ATTEMPTS = 10


def _window(height, width, rng):
  """(top, left, crop_h, crop_w) of an inception crop, in pixels."""
  for _ in range(_ATTEMPTS):
    area = rng.uniform(0.08, 1) * height * width
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    crop_h = int(round(math.sqrt(area / ratio)))
    crop_w = int(round(math.sqrt(area * ratio)))
    if 0 < crop_h <= height and 0 < crop_w <= width:
      return (int(rng.integers(0, height - crop_h + 1)),
              int(rng.integers(0, width - crop_w + 1)), crop_h, crop_w)
  return 0, 0, height, width


def _crop_pil(path, rng):
  with Image.open(path) as image:
    image = image.convert('RGB')
    top, left, crop_h, crop_w = _window(image.height, image.width, rng)
    return np.asarray(image.resize(
        (_SIZE, _SIZE), Image.BILINEAR,
        box=(left, top, left + crop_w, top + crop_h)))


def _crop_tf(path, rng):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (--ops=tf)
  data = tf.io.read_file(path)
  height, width = tf.image.extract_jpeg_shape(data)[:2].numpy()
  window = _window(int(height), int(width), rng)
  image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
  return tf.image.resize(image, (_SIZE, _SIZE)).numpy()


class _Preprocess(grain.transforms.RandomMap):
  """(file, label) -> {'image': float32[224, 224, 3] in [-1, 1], 'label'}."""

  def __init__(self, ops):
    self.crop = {'pil': _crop_pil, 'tf': _crop_tf}[ops]

  def random_map(self, element, rng):
    path, label = element
    image = self.crop(path, rng)
    if rng.random() < 0.5:
      image = image[:, ::-1]
    return {'image': np.asarray(image, np.float32) / 127.5 - 1,
            'label': np.int32(label)}


def _files(root):
  classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
  return [(os.path.join(root, c, name), label)
          for label, c in enumerate(classes)
          for name in sorted(os.listdir(os.path.join(root, c)))]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('root', help='ImageFolder root: ROOT/<class>/<images>')
  parser.add_argument('--workers', type=int,
                      default=len(os.sched_getaffinity(0)))
  parser.add_argument('--threads', type=int, default=1)
  parser.add_argument('--ops', choices=('pil', 'tf'), default='pil')
  parser.add_argument('--batches', type=int, default=15)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--batch_size', type=int, default=64)
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()  # Grain reads its absl flags' defaults.
  dataset = (grain.MapDataset.source(_files(args.root)).shuffle(seed=0)
             .repeat().random_map(_Preprocess(args.ops), seed=0)
             .batch(args.batch_size, drop_remainder=True)
             .to_iter_dataset(grain.ReadOptions(num_threads=args.threads,
                                                prefetch_buffer_size=2)))
  if args.workers:
    dataset = dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=args.workers))
  batches = iter(dataset)
  print(cpu_time.time_batches(
      f'grain workers={args.workers} threads={args.threads} ops={args.ops}',
      batches, args.batches, args.batch_size, warmup=args.warmup))


if __name__ == '__main__':
  main()
