r"""The comparison point of `--input`: torchvision's ImageFolder + DataLoader.

  python benchmarks/torchvision_loader.py ROOT/train --workers=2 [--batches=15]

Same work per image as vit_jax's train pipeline at its defaults
(`configs/common.py`): inception crop (RandomResizedCrop to 224, area
0.08-1, aspect ratio 3/4-4/3), random horizontal flip, float32 in [-1, 1];
batches of 64. Prints images/s over `--batches` batches after 2 warm-up
batches, and images per CPU-second of the main process and its workers
(`cpu_time.py`: robust to other load on the machine). Run it in a separate
environment with torch, torchvision and Pillow (`python3 -m venv /tmp/tv &&
/tmp/tv/bin/pip install torch torchvision pillow`); vit_jax never imports it
and does not depend on torch.
"""
import argparse

import cpu_time  # benchmarks/cpu_time.py, beside this script.
import torch
from torchvision import datasets
from torchvision import transforms


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('root', help='ImageFolder root: ROOT/<class>/<images>')
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--batches', type=int, default=15)
  parser.add_argument('--batch_size', type=int, default=64)
  args = parser.parse_args()
  torch.set_num_threads(1)
  transform = transforms.Compose([
      transforms.RandomResizedCrop(224, scale=(0.08, 1.0),
                                   ratio=(3 / 4, 4 / 3)),
      transforms.RandomHorizontalFlip(),
      transforms.ToTensor(),
      transforms.Normalize([0.5] * 3, [0.5] * 3),  # [0, 1] -> [-1, 1].
  ])
  loader = torch.utils.data.DataLoader(
      datasets.ImageFolder(args.root, transform), batch_size=args.batch_size,
      shuffle=True, num_workers=args.workers, drop_last=True,
      persistent_workers=args.workers > 0)
  batches = (batch for _ in iter(int, 1) for batch in loader)  # Endless.
  print(cpu_time.time_batches(
      f'torchvision workers={args.workers}',
      batches, args.batches, args.batch_size, warmup=2))


if __name__ == '__main__':
  main()
