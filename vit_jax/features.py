r"""Writes a ViT's features of many images to one .npz file, for people who
use a pretrained ViT as a backbone without writing JAX.

  python -m vit_jax.features --checkpoint=FILE --data=DIR --out=features.npz
  python -m vit_jax.features --checkpoint=FILE --data=fashion_mnist:test[:500] \
      --blocks=-1,-4 --norm --out=features.npz

The model comes from the checkpoint as for `predict` (`--model`,
`--config_json`, or the config.json beside a .safetensors file; images are
resized to `--image_size`, default the size the checkpoint was trained at).
`--data` is an image folder (every image file below it, sorted by path) or
DATASET:SPLIT of the trainer's datasets (`data/sources.py`: fashion_mnist,
imagefolder needs a folder, any prepared TFDS dataset; TFDS slices allowed).

The file (`np.load`) holds, without `--blocks`, `features` [N, D]: the pooled
representation the head would read (class token, mean or MAP, and the
pre-logits layer if any); with `--blocks` (0-based block indices, negative
from the end) `block_{i}` [N, rows, cols, D] for each block i, the maps of
`VisionTransformer.forward_intermediates` (`--norm`: through the final
LayerNorm). Beside them `paths` (a folder) or `labels` (a split). Progress
goes to stderr. Bad input ends with one `error:` line and exit status 1
(a bad flag: one `error:` line, exit status 2).
"""
import io
import os
import sys

from absl import app
from absl import flags
import jax
import numpy as np
from PIL import Image

from vit_jax import atomic_file
from vit_jax import command_line
from vit_jax import inference
from vit_jax import models

FLAGS = flags.FLAGS


def _folder_images(root: str):
  """(paths, None, fetch(i, j) -> model inputs) of every image below root."""
  from vit_jax.data import sources  # pylint: disable=g-import-not-at-top
  paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root)
                 for f in files if f.lower().endswith(sources.IMAGE_EXTENSIONS))
  if not paths:
    raise ValueError(f'--data={root!r} holds no image files '
                     f'({", ".join(sources.IMAGE_EXTENSIONS)}).')
  return paths, None, lambda size, i, j: np.stack(
      [inference.load_image(p, size) for p in paths[i:j]])


def _as_input(image, size: int) -> np.ndarray:
  """A decoded uint8 image [H, W, C] (C 1 or 3) -> the model's input."""
  img = Image.fromarray(np.asarray(image).squeeze(-1) if image.shape[-1] == 1
                        else np.asarray(image)).convert('RGB')
  img = img.resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(img, np.float32) / 127.5 - 1.0


def _split_images(spec: str):
  """(None, labels, fetch) of DATASET:SPLIT (`data.sources`)."""
  dataset, _, split = spec.partition(':')
  if not dataset or not split or os.sep in dataset:
    raise ValueError(f'--data={spec!r} is neither a folder nor DATASET:SPLIT '
                     '(e.g. fashion_mnist:test[:1000]).')
  # pylint: disable=g-import-not-at-top  (TensorFlow: only for a split)
  import ml_collections
  from vit_jax.data import sources
  # pylint: enable=g-import-not-at-top
  config = ml_collections.ConfigDict(dict(dataset=dataset, data_dir=None,
                                          tfds_download=False))
  source = sources.get_source(config, split)
  labels = source.fetch(np.arange(source.num_examples))['label']

  def fetch(size, i, j):
    batch = source.fetch(np.arange(i, j))
    if 'image' in batch:
      return np.stack([_as_input(x, size) for x in batch['image']])
    if 'path' in batch:
      return np.stack([inference.load_image(p, size) for p in batch['path']])
    return np.stack([_as_input(np.asarray(Image.open(io.BytesIO(b))), size)
                     for b in batch['encoded']])
  return None, labels, fetch


def _parse_blocks(spec):
  try:
    return [int(b) for b in spec.split(',')]
  except ValueError:
    raise ValueError(f'--blocks={spec!r}: give block indices such as -1 or '
                     '0,5,11.') from None


def extract(loaded: inference.Loaded, fetch, total: int, *, blocks=None,
            norm: bool = False, batch_size: int = 32, log=None):
  """{name: array} of the features of images fetch(size, i, j) for
  0 <= i < j <= total (see the module docstring for the names)."""
  config = loaded.config
  if blocks is not None and models.model_class(config) is not (
      models.VisionTransformer):
    raise ValueError('--blocks needs a ViT (or hybrid); a Mixer gives '
                     'pooled features only.')
  model = models.create(config, 0)  # No head: the pooled representation.
  if blocks is None:
    forward = jax.jit(lambda p, x: {'features': model.apply(
        {'params': p}, x, train=False)})
  else:
    from vit_jax.models import resample  # pylint: disable=g-import-not-at-top
    taken = resample.take_indices(config.transformer.num_layers, blocks)
    forward = jax.jit(lambda p, x: dict(zip(
        (f'block_{i}' for i in taken),
        model.apply({'params': p}, x, train=False,
                    method='forward_intermediates', indices=list(taken),
                    norm=norm))))
  out = {}
  for i in range(0, total, batch_size):
    j = min(i + batch_size, total)
    x = fetch(loaded.image_size, i, j)
    # Pad the last batch: one compiled shape for the whole run.
    padded = np.concatenate([x, np.zeros((i + batch_size - j,) + x.shape[1:],
                                         x.dtype)])
    for name, value in forward(loaded.params, padded).items():
      out.setdefault(name, []).append(np.asarray(value)[:j - i])
    if log:
      log(f'{j}/{total} images')
  return {name: np.concatenate(parts) for name, parts in out.items()}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  log = lambda line: print(line, file=sys.stderr, flush=True)
  try:
    if FLAGS.batch_size < 1:
      raise ValueError(f'--batch_size={FLAGS.batch_size} must be >= 1.')
    blocks = None if FLAGS.blocks is None else _parse_blocks(FLAGS.blocks)
    if not FLAGS.out.endswith('.npz'):
      raise ValueError(f'--out={FLAGS.out!r} must end in .npz.')
    from vit_jax import remote  # pylint: disable=g-import-not-at-top
    remote.check(FLAGS.checkpoint, '--checkpoint')
    paths, labels, fetch = (_folder_images if os.path.isdir(FLAGS.data)
                            else _split_images)(FLAGS.data)
    total = len(paths if paths is not None else labels)
    loaded = inference.load_model(FLAGS.checkpoint, model_name=FLAGS.model,
                                  config_json=FLAGS.config_json,
                                  image_size=FLAGS.image_size)
    log(f'{total} images at {loaded.image_size}x{loaded.image_size} px')
    out = extract(loaded, fetch, total, blocks=blocks, norm=FLAGS.norm,
                  batch_size=FLAGS.batch_size, log=log)
  except (OSError, ValueError) as e:
    sys.exit(f'error: {e}')
  if paths is not None:
    out['paths'] = np.array(paths)
  else:
    out['labels'] = labels
  buffer = io.BytesIO()
  np.savez(buffer, **out)
  atomic_file.write(FLAGS.out, buffer.getvalue())
  log(f'wrote {FLAGS.out}: ' + ', '.join(
      f'{k} {tuple(v.shape)}' for k, v in out.items()))


if __name__ == '__main__':
  inference.define_model_flags()
  flags.DEFINE_string('data', None, 'An image folder, or DATASET:SPLIT '
                      '(e.g. fashion_mnist:test[:1000]).', required=True)
  flags.DEFINE_string('out', None, 'The .npz file to write.', required=True)
  flags.DEFINE_string('blocks', None, 'Block indices (e.g. -1 or 0,5,11): '
                      'per-block maps instead of pooled features.')
  flags.DEFINE_bool('norm', False, 'With --blocks: through the final '
                    'LayerNorm.')
  flags.DEFINE_integer('batch_size', 32, 'Images per forward pass.')
  app.run(main, flags_parser=command_line.parse_flags)
