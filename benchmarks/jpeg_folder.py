r"""Writes the input benchmark's image folder: ImageNet-like JPEGs.

  python benchmarks/jpeg_folder.py /tmp/jpeg_folder [--count=1000]

ROOT/train/<class>/<n>.jpg: random crops of scikit-image's bundled sample
photos (`skimage.data`), resized to about 500 x 375 (either orientation,
+-20% per side), saved at JPEG quality 90, in 10 classes. Needs
scikit-image and Pillow; nothing is downloaded.
"""
import argparse
import os

import numpy as np
from PIL import Image
import skimage.data

_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field',
           'immunohistochemistry', 'retina', 'motorcycle_left', 'camera',
           'moon', 'page', 'text', 'horse', 'coins')
_CLASSES = 10


def _photos():
  for name in _PHOTOS:
    loader = getattr(skimage.data, name, None)
    if loader is None:
      continue
    try:
      image = np.asarray(loader())
    except Exception:  # pylint: disable=broad-except
      continue  # Photos that need a download (pooch) are skipped.
    if image.dtype != np.uint8:
      image = (255 * (image > 0)).astype(np.uint8)
    yield Image.fromarray(image).convert('RGB')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('root')
  parser.add_argument('--count', type=int, default=1000)
  args = parser.parse_args()
  photos = list(_photos())
  rng = np.random.default_rng(0)
  for i in range(args.count):
    photo = photos[i % len(photos)]
    w, h = photo.size
    cw, ch = (int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1)))
    x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    size = (int(500 * rng.uniform(0.8, 1.2)), int(375 * rng.uniform(0.8, 1.2)))
    if rng.random() < 0.3:
      size = size[::-1]
    image = photo.crop((x, y, x + cw, y + ch)).resize(size, Image.BILINEAR)
    folder = os.path.join(args.root, 'train', f'class{i % _CLASSES}')
    os.makedirs(folder, exist_ok=True)
    image.save(os.path.join(folder, f'{i:05d}.jpg'), quality=90)


if __name__ == '__main__':
  main()
