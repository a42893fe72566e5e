r"""Classifies images with a ViT (or MLP-Mixer) checkpoint, or with a run of
the trainer.

  python -m vit_jax.predict --model=ViT-B_16 --checkpoint=ViT-B_16.npz \
      --labels=imagenet2012 --top_k=5 [--json] photo.jpg ...
  python -m vit_jax.predict --workdir=DIR [--step=N] photo.jpg ...

With `--workdir` everything comes from the run (`workdir/run.py`'s `load`): its
model and image size from DIR/config.json, its params from DIR/params.npz (or
checkpoint N), its class names from its dataset, and the images are
preprocessed as its eval split was.

The architecture comes from a preset (`--model=NAME`) or from a JSON file
(`--config_json=FILE[:KEY]`): the object at KEY (or the whole file) is a model
config, or holds one under 'model' or 'config', as the entries of
shared/reference/cases.json and param_layout.json do. What a preset leaves
open is read from the checkpoint: the class count (`head`), the pre-logits
size, and the image size its position embeddings were trained at. With
`--image_size` the images are resized to that size instead and the position
embeddings interpolated to the new grid. A Mixer's image size comes from its
token-mixing weights, which allow no other token count.

`--labels=imagenet2012` names the 1000 ImageNet classes from the list that
tensorflow-datasets installs; `--labels=FILE` reads one name per line; without
it classes are shown by index. Bad inputs (unreadable images or checkpoint,
unknown model, checkpoint that does not fit) end with a one-line message on
stderr and exit status 1 (2 for a bad flag).
"""
import json
import sys
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from vit_jax import command_line
from vit_jax import inference
# The library half of this tool moved to `inference`; its names stay
# importable from here.
from vit_jax.inference import (  # pylint: disable=unused-import,g-importing-member
    Loaded, config_from_json, imagenet2012_labels, load_image,
    load_image_as_run, load_model, predict, read_json_entry, read_labels)

FLAGS = flags.FLAGS


def _format(paths: Sequence[str], probs, indices, names, as_json: bool) -> str:
  results = [{
      'image': path,
      'predictions': [{
          'index': int(i),
          'label': names[i] if names else str(i),
          'probability': float(p),
      } for p, i in zip(ps, idx)],
  } for path, ps, idx in zip(paths, probs, indices)]
  if as_json:
    return json.dumps(results, indent=1)
  lines = []
  for result in results:
    lines.append(result['image'])
    lines += [f'  {r["probability"]:.4f}  {r["label"]}'
              for r in result['predictions']]
  return '\n'.join(lines)


def _from_workdir(paths):
  """(model, params, images, class names) of the run in --workdir."""
  # pylint: disable=g-import-not-at-top  (TensorFlow, for this form only)
  from vit_jax import remote
  remote.check(FLAGS.workdir, '--workdir')  # Before importing TensorFlow.
  from vit_jax.workdir import run as run_dir
  # pylint: enable=g-import-not-at-top
  run = run_dir.load(FLAGS.workdir, FLAGS.step)
  images = np.stack([inference.load_image_as_run(p, run.config) for p in paths])
  return run.model, run.params, images, run.class_names


def _from_checkpoint(paths):
  """(model, params, images, None) from --checkpoint and --model or
  --config_json."""
  from vit_jax import remote  # pylint: disable=g-import-not-at-top
  remote.check(FLAGS.checkpoint, '--checkpoint')
  loaded = inference.load_model(FLAGS.checkpoint, model_name=FLAGS.model,
                      config_json=FLAGS.config_json,
                      image_size=FLAGS.image_size)
  if not loaded.model.num_classes:
    raise ValueError(f'Checkpoint {FLAGS.checkpoint!r} has no classifier '
                     'head to predict with.')
  images = np.stack([inference.load_image(p, loaded.image_size) for p in paths])
  return loaded.model, loaded.params, images, None


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError('Pass one or more image paths.')
  try:
    model, params, images, names = (
        _from_workdir if FLAGS.workdir else _from_checkpoint)(paths)
    if FLAGS.labels or not names:
      names = inference.read_labels(FLAGS.labels, model.num_classes)
  except (OSError, ValueError) as e:
    sys.exit(f'error: {e}')
  probs, indices = inference.predict(model, params, images, FLAGS.top_k)
  print(_format(paths, probs, indices, names, FLAGS.json))


if __name__ == '__main__':
  inference.define_model_flags(from_workdir=True)
  flags.DEFINE_string('labels', None,
                      "'imagenet2012' or a file with one class name per line.")
  flags.DEFINE_integer('top_k', 5, 'How many classes to show per image.')
  flags.DEFINE_bool('json', False, 'Print a JSON list instead of text.')
  app.run(main, flags_parser=command_line.parse_flags)
