r"""Classifies images with a ViT (or MLP-Mixer) checkpoint, or with a run of
the trainer.

  python -m vit_jax.predict --model=ViT-B_16 --checkpoint=ViT-B_16.npz \
      --labels=imagenet2012 --top_k=5 [--json] photo.jpg ...
  python -m vit_jax.predict --workdir=DIR [--step=N] photo.jpg ...

With `--workdir` everything comes from the run (`run_dir.load`): its model
and image size from DIR/config.json, its params from DIR/params.npz (or
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
stderr and exit status 1.
"""
import functools
import importlib.util
import json
import math
import os
import runpy
import sys
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
from PIL import ImageOps

from vit_jax import checkpoint
from vit_jax import models
from vit_jax.configs import models as models_config

FLAGS = flags.FLAGS


class Loaded(NamedTuple):
  """A model with its params, config and the image size it runs at."""
  model: Any  # models.VisionTransformer or models.MlpMixer.
  params: dict
  config: ml_collections.ConfigDict
  image_size: int


def define_model_flags(*, from_workdir: bool = False):
  """Flags that pick a model and checkpoint; `visualize` uses them too.

  They are defined by the entry point (not at import) so that one program can
  import both tools without defining the same flag twice. `from_workdir`
  adds --workdir and --step as the alternative to the other flags.
  """
  flags.DEFINE_string('model', None, 'Model preset name, e.g. ViT-B_16.')
  flags.DEFINE_string(
      'config_json', None, 'Model config as FILE[:KEY] instead of --model, '
      'e.g. shared/reference/cases.json:vit_s16_2blocks.')
  flags.DEFINE_string('checkpoint', None, 'Published-layout .npz file, or a '
                      'timm / transformers ViT .safetensors, or a hub name '
                      'hf-hub:ORG/NAME[@REVISION][/FILE].')
  flags.DEFINE_integer(
      'image_size', None, 'Input resolution; default: the resolution the '
      "checkpoint's position embeddings were trained at.")
  if not from_workdir:
    flags.mark_flag_as_required('checkpoint')
    # Neither: the model a .safetensors checkpoint (its config.json) describes.
    flags.mark_flags_as_mutual_exclusive(['model', 'config_json'])
    return
  flags.DEFINE_string('workdir', None, 'The --workdir of a main.py run.')
  flags.DEFINE_integer('step', None, 'With --workdir: the checkpoint of '
                       'step STEP instead of params.npz.')
  flags.register_multi_flags_validator(
      ['workdir', 'step', 'checkpoint', 'model', 'config_json', 'image_size'],
      _one_model_source,
      message='Pass --workdir=DIR [--step=N], or --checkpoint=FILE with at '
      'most one of --model or --config_json (neither: a .safetensors file '
      'with its config.json) [--image_size].')


def _one_model_source(f) -> bool:
  if f['workdir']:
    return not any(f[k] for k in ('checkpoint', 'model', 'config_json',
                                  'image_size'))
  return (f['step'] is None and bool(f['checkpoint']) and
          (f['model'] is None or f['config_json'] is None))


def read_json_entry(spec: str):
  """The JSON value of `FILE[:KEY]`: the file's object at KEY, or the whole
  file (a path that exists is never split at a colon)."""
  path, key = spec, None
  if not os.path.isfile(spec) and ':' in spec:
    path, key = spec.rsplit(':', 1)
  try:
    with open(path) as f:
      obj = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'Cannot read model config {path!r}: {e}') from e
  if key is not None:
    if not isinstance(obj, dict) or key not in obj:
      raise ValueError(f'{path!r} has no entry {key!r}.')
    obj = obj[key]
  return obj


def config_from_json(spec: str) -> ml_collections.ConfigDict:
  """Model config from `FILE[:KEY]` (see the module docstring)."""
  obj = read_json_entry(spec)
  if isinstance(obj, dict):
    obj = obj.get('model') or obj.get('config') or obj
  if not (isinstance(obj, dict) and 'patches' in obj and
          any(field in obj for field in models.FAMILIES)):
    raise ValueError(f'{spec!r} is not a model config (an object with '
                     'patches, hidden_size and transformer for a ViT; '
                     'patches, hidden_dim, num_blocks, ... for a Mixer).')
  return ml_collections.ConfigDict(obj)


def _trained_image_size(config, num_patch_tokens: int) -> Optional[int]:
  """Square image size whose patch grid has `num_patch_tokens` tokens."""
  side = math.isqrt(num_patch_tokens)
  if side * side != num_patch_tokens:
    return None
  stride = 224 // models.token_grid(config, 224)[0]  # Pixels per token.
  size = side * stride
  return size if models.token_grid(config, size) == (side, side) else None


def load_model(checkpoint_path: str, *, model_name: Optional[str] = None,
               config_json: Optional[str] = None,
               image_size: Optional[int] = None) -> Loaded:
  """Builds the model for a checkpoint and checks that the params fit it.

  Args:
    checkpoint_path: published-layout .npz, or timm / transformers
      .safetensors (`checkpoint.load_params`).
    model_name: preset name; or
    config_json: `FILE[:KEY]` holding the model config; neither: the model
      config a .safetensors file describes.
    image_size: run at this resolution (position embeddings are resized);
      None: the resolution the checkpoint was trained at.

  Raises:
    ValueError (CheckpointMismatchError included) or OSError, with a message
    meant for the user.
  """
  if model_name:
    config = models_config.get_model_config(model_name)
  elif config_json:
    config = config_from_json(config_json)
  elif checkpoint.is_safetensors(checkpoint_path):
    config = checkpoint.safetensors_model_config(checkpoint_path)
  else:
    raise ValueError('Pass --model or --config_json for a .npz checkpoint.')
  params = checkpoint.load_params(checkpoint_path, config)
  num_classes = params['head']['bias'].shape[-1] if 'head' in params else 0
  if 'pre_logits' in params:
    config.representation_size = params['pre_logits']['bias'].shape[-1]

  prefix = int(config.get('classifier', 'token') == 'token')
  posemb = params.get('Transformer', {}).get('posembed_input', {}).get(
      'pos_embedding')
  tokens = checkpoint.mixer_tokens(params)
  if posemb is None and tokens is None:
    raise checkpoint.CheckpointMismatchError(
        f'Checkpoint {checkpoint_path!r} has no position embeddings; is it a '
        'ViT (or Mixer) checkpoint?')
  if tokens is None:
    tokens = posemb.shape[1] - prefix
  trained = _trained_image_size(config, tokens)
  if image_size is None:
    if trained is None:
      raise ValueError(
          f'Cannot tell the image size from the {tokens} tokens of the '
          'checkpoint; pass --image_size.')
    image_size = trained

  try:
    model = models.create(config, num_classes)
  except TypeError as e:  # An unknown field in a JSON config.
    raise ValueError(f'Bad model config: {e}') from e
  expected = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.key(0),
      jnp.zeros((1, image_size, image_size, 3)))['params']
  checkpoint.check_token_count(params, expected, checkpoint_path, config)
  new_posemb = expected.get('Transformer', {}).get('posembed_input', {}).get(
      'pos_embedding')
  if posemb is not None and new_posemb is not None and (
      posemb.shape[1] != new_posemb.shape[1]) and (
          posemb.shape[2:] == new_posemb.shape[2:]):
    params['Transformer']['posembed_input']['pos_embedding'] = (
        checkpoint.interpolate_posemb(
            posemb, new_posemb.shape[1], num_prefix_tokens=prefix,
            new_grid=models.token_grid(config, image_size)))
  params = checkpoint.fit_params(params, expected, checkpoint_path,
                                 config.get('model_name'))
  return Loaded(model, params, config, image_size)


def _read_rgb(path: str, size: Optional[int]) -> Image.Image:
  """The upright RGB image; transparent areas white, not the arbitrary
  colour stored under them. `size`: JPEGs may decode at a reduced scale
  that still covers size x size."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Image file {path!r} does not exist.')
  try:
    with Image.open(path) as img:
      if size:
        img.draft('RGB', (size, size))
      img = ImageOps.exif_transpose(img)
      if img.mode in ('RGBA', 'LA', 'PA') or 'transparency' in img.info:
        img = img.convert('RGBA')
        white = Image.new('RGBA', img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
      return img.convert('RGB')
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f'Cannot read image {path!r}: {e}') from e


def load_image(path: str, size: int) -> np.ndarray:
  """[size, size, 3] float32 in [-1, 1], any PIL-readable mode.

  The whole image is resized to a square without cropping, as the original
  evaluation did.
  """
  img = _read_rgb(path, size).resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(img, np.float32) / 127.5 - 1.0


def load_image_as_run(path: str, config) -> np.ndarray:
  """[S, S, 3] model input, preprocessed as the eval split of the run with
  experiment `config` was (`input_pipeline.eval_model_input`)."""
  from vit_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  image = np.asarray(_read_rgb(path, None))
  return input_pipeline.eval_model_input(image[None], config)[0]


def imagenet2012_labels() -> List[str]:
  """The 1000 ImageNet class names, in class-index order.

  tensorflow-datasets' imagenet2012 builder only carries WordNet ids; its
  SI-Score module holds the readable names in index order. The file is read
  without importing tensorflow-datasets (which would import TensorFlow).
  """
  spec = importlib.util.find_spec('tensorflow_datasets')
  path = os.path.join(spec.submodule_search_locations[0], 'datasets',
                      'siscore', 'labels.py')
  return list(runpy.run_path(path)['IMAGENET_LABELS_LIST'])


def read_labels(spec: Optional[str], num_classes: int) -> Optional[List[str]]:
  """Class names from `--labels` (see the module docstring), or None."""
  if not spec:
    return None
  if spec == 'imagenet2012':
    names = imagenet2012_labels()
  else:
    try:
      with open(spec) as f:
        names = f.read().splitlines()
    except OSError as e:
      raise ValueError(f'Cannot read labels file {spec!r}: {e}') from e
  if len(names) != num_classes:
    raise ValueError(f'--labels={spec} has {len(names)} names but the '
                     f'checkpoint has {num_classes} classes.')
  return names


def predict(model, params, images: np.ndarray, top_k: int = 5
            ) -> Tuple[np.ndarray, np.ndarray]:
  """Top-k (probabilities, class indices), each [N, k], most likely first.

  Compiles the model on every call: meant for one batch, as from the CLI.
  """
  logits = jax.jit(functools.partial(model.apply, train=False))(
      {'params': params}, images)
  probs, indices = jax.lax.top_k(jax.nn.softmax(logits),
                                 min(top_k, logits.shape[-1]))
  return np.asarray(probs), np.asarray(indices)


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
  from vit_jax import run_dir
  # pylint: enable=g-import-not-at-top
  run = run_dir.load(FLAGS.workdir, FLAGS.step)
  images = np.stack([load_image_as_run(p, run.config) for p in paths])
  return run.model, run.params, images, run.class_names


def _from_checkpoint(paths):
  """(model, params, images, None) from --checkpoint and --model or
  --config_json."""
  from vit_jax import remote  # pylint: disable=g-import-not-at-top
  remote.check(FLAGS.checkpoint, '--checkpoint')
  loaded = load_model(FLAGS.checkpoint, model_name=FLAGS.model,
                      config_json=FLAGS.config_json,
                      image_size=FLAGS.image_size)
  if not loaded.model.num_classes:
    raise ValueError(f'Checkpoint {FLAGS.checkpoint!r} has no classifier '
                     'head to predict with.')
  images = np.stack([load_image(p, loaded.image_size) for p in paths])
  return loaded.model, loaded.params, images, None


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError('Pass one or more image paths.')
  try:
    model, params, images, names = (
        _from_workdir if FLAGS.workdir else _from_checkpoint)(paths)
    if FLAGS.labels or not names:
      names = read_labels(FLAGS.labels, model.num_classes)
  except (OSError, ValueError) as e:
    sys.exit(f'error: {e}')
  probs, indices = predict(model, params, images, FLAGS.top_k)
  print(_format(paths, probs, indices, names, FLAGS.json))


if __name__ == '__main__':
  define_model_flags(from_workdir=True)
  flags.DEFINE_string('labels', None,
                      "'imagenet2012' or a file with one class name per line.")
  flags.DEFINE_integer('top_k', 5, 'How many classes to show per image.')
  flags.DEFINE_bool('json', False, 'Print a JSON list instead of text.')
  app.run(main)
