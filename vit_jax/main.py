r"""The original release's command line, on this package's trainer:

  python -m vit_jax.main --workdir=DIR \
      --config=vit_jax/configs/vit.py:b16,cifar10 \
      --config.pretrained_dir=DIR_WITH_ViT-B_16.npz

trains the original's config (`vit_jax/original/translate.py` says how each
field is read; one this trainer cannot honour is an error naming it) and
leaves DIR/checkpoint_N and TensorBoard events as the original did, besides
this trainer's run directory (vit_jax/workdir/layout.py).
`--config=vit_jax/configs/inference_time.py` times a forward pass instead.
This package's own configs train with `python main.py` (the repository's).
"""
import sys

from absl import app
from absl import flags

from vit_jax import command_line
from vit_jax.original import train

_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Directory to store logs and model data.')
command_line.define_config(
    None, 'The original release\'s config file, with `:ARG`.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  try:
    train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=command_line.parse_flags)
