r"""Exports a trained run for serving: a TF SavedModel or a StableHLO file.

  python -m vit_jax.export --workdir=DIR --out=PATH \
      [--format=saved_model|stablehlo] [--step=N] [--batch_size=N]

Both take a batch of uint8 RGB images [N, S, S, 3] at the run's image size S
(N free unless --batch_size fixes it; a grayscale image is given as three
equal channels, as the trainer feeds Fashion-MNIST) and compute the model's
class probabilities [N, classes] from them. The uint8 -> model input step is
the trainer's eval scaling (`input_pipeline`: x / 127.5 - 1); resizing to S
is the client's.

- `saved_model` (default): a TensorFlow SavedModel made with jax2tf. Its
  `serving_default` signature takes `images` and returns `probabilities` and
  `classes`, the class names [N, classes] (every row the same, so that both
  outputs have the batch dimension that TF Serving's row format wants). The
  params are variables of the SavedModel; the computation is the model's
  StableHLO (an XlaCallModule op), lowered for `--platforms`.
- `stablehlo`: a `jax.export` artifact with the params inside:
  `jax.export.deserialize(bytes).call(images)` returns the probabilities.

Bad input ends with one `error:` line and exit status 1 (2 for a bad flag).
"""
import sys
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import progress

FORMATS = ('saved_model', 'stablehlo')
PLATFORMS = ('cpu', 'cuda', 'tpu')


def probabilities_fn(model) -> Callable:
  """(params, uint8 images [N, S, S, 3]) -> softmax probabilities [N, C]."""

  def probabilities(params, images):
    x = images.astype(jnp.float32) / 127.5 - 1  # As input_pipeline's eval.
    return jax.nn.softmax(model.apply({'params': params}, x, train=False))

  return probabilities


def _images_shape(image_size: int, batch_size: Optional[int]):
  batch = batch_size or jax.export.symbolic_shape('batch')[0]
  return (batch, image_size, image_size, 3)


def export_stablehlo(model, params, image_size: int, *,
                     batch_size: Optional[int] = None,
                     platforms: Sequence[str] = PLATFORMS
                     ) -> jax.export.Exported:
  """The probabilities of uint8 images, params inside, as `jax.export`."""
  params = jax.tree.map(np.asarray, params)
  fn = jax.jit(lambda images: probabilities_fn(model)(params, images))
  images = jax.ShapeDtypeStruct(_images_shape(image_size, batch_size),
                                jnp.uint8)
  return jax.export.export(fn, platforms=tuple(platforms))(images)


def save_saved_model(path: str, model, params, class_names: Sequence[str],
                     image_size: int, *, batch_size: Optional[int] = None,
                     platforms: Sequence[str] = PLATFORMS) -> None:
  """Writes the SavedModel described in the module docstring to `path`."""
  # pylint: disable=g-import-not-at-top  (TensorFlow: only for this format)
  import tensorflow as tf
  from jax.experimental import jax2tf
  # pylint: enable=g-import-not-at-top
  batch = 'batch' if batch_size is None else str(batch_size)
  converted = jax2tf.convert(
      probabilities_fn(model), with_gradient=False,
      polymorphic_shapes=[None, f'({batch}, {image_size}, {image_size}, 3)'],
      native_serialization_platforms=tuple(platforms))
  module = tf.Module()
  module.params = tf.nest.map_structure(
      lambda x: tf.Variable(np.asarray(x), trainable=False), params)
  names = tf.constant(list(class_names))

  @tf.function(autograph=False, input_signature=[tf.TensorSpec(
      [batch_size, image_size, image_size, 3], tf.uint8, name='images')])
  def serve(images):
    rows = tf.shape(images)[0]
    return {'probabilities': converted(module.params, images),
            'classes': tf.broadcast_to(names, [rows, len(class_names)])}

  module.serve = serve
  tf.saved_model.save(module, path, signatures={'serving_default': serve})


def export_run(workdir: str, out: str, *, fmt: str = 'saved_model',
               step: Optional[int] = None, batch_size: Optional[int] = None,
               platforms: Sequence[str] = PLATFORMS) -> str:
  """Exports the run in `workdir` (`workdir/run.py`'s `load`) to `out`;
  returns a one-line summary."""
  from vit_jax.workdir import run as run_dir  # pylint: disable=g-import-not-at-top
  if fmt not in FORMATS:
    raise ValueError(f'--format={fmt}: use one of {", ".join(FORMATS)}.')
  unknown = set(platforms) - set(PLATFORMS)
  if unknown or not platforms:
    raise ValueError(f'--platforms: use some of {", ".join(PLATFORMS)}.')
  if batch_size is not None and batch_size <= 0:
    raise ValueError(f'--batch_size={batch_size} must be positive.')
  if epath.Path(out).exists():
    raise FileExistsError(f'--out={out} exists; remove it or pass another '
                          'path.')
  with progress.waiting('Loading the run'):  # The time, on a terminal.
    run = run_dir.load(workdir, step)
  size = run.config.image_size
  with progress.waiting(f'Lowering and writing the {fmt} export'):
    if fmt == 'stablehlo':
      exported = export_stablehlo(run.model, run.params, size,
                                  batch_size=batch_size, platforms=platforms)
      epath.Path(out).write_bytes(exported.serialize())
    else:
      save_saved_model(out, run.model, run.params, run.class_names, size,
                       batch_size=batch_size, platforms=platforms)
  batch = batch_size or 'N'
  return (f'{out}: {fmt} of {run.source}, uint8 images [{batch}, {size}, '
          f'{size}, 3] -> probabilities [{batch}, {len(run.class_names)}] '
          f'({", ".join(platforms)}).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from vit_jax import remote  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    remote.check(f.workdir, '--workdir')
    remote.check(f.out, '--out', must_exist=False)
    print(export_run(f.workdir, f.out, fmt=f.format, step=f.step,
                     batch_size=f.batch_size, platforms=f.platforms))
  except (OSError, ValueError) as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'The --workdir of a main.py run.',
                      required=True)
  flags.DEFINE_string('out', None, 'Where to write the export.',
                      required=True)
  flags.DEFINE_enum('format', 'saved_model', FORMATS, 'What to write.')
  flags.DEFINE_integer('step', None, 'Export checkpoint STEP instead of '
                       'params.npz.')
  flags.DEFINE_integer('batch_size', None, 'Fix the batch dimension (e.g. 1 '
                       'for TFLite); default: any batch size.')
  flags.DEFINE_list('platforms', list(PLATFORMS), 'Platforms to lower for.')
  from vit_jax import command_line  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=command_line.parse_flags)
