"""Inference shared by the command-line tools: models, images, labels.

`predict`, `visualize` and `zeroshot` build a model from a checkpoint
(`load_model`: a preset name, a JSON model config, or the config a
.safetensors file describes; what the preset leaves open is read from the
checkpoint), read images as the model wants them (`load_image`, or as a
training run preprocessed its eval split: `load_image_as_run`), name classes
(`read_labels`) and classify (`predict`); `zeroshot`'s LiT model, params
and tokenizer come from `load_lit_model`. The tools' shared model flags are
defined here too (`define_model_flags`), by the entry point that needs them.
"""
import functools
import importlib.util
import json
import math
import os
import runpy
from typing import Any, List, NamedTuple, Optional, Tuple

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
from PIL import ImageOps

from vit_jax import checkpoint
from vit_jax.checkpoint import hub as checkpoint_hub
from vit_jax import models
from vit_jax.configs import models as models_config
from vit_jax.models import lit as models_lit


class Loaded(NamedTuple):
  """A model with its params, config and the image size it runs at."""
  model: Any  # models.VisionTransformer or models.MlpMixer.
  params: dict
  config: ml_collections.ConfigDict
  image_size: int


def define_model_flags(*, from_workdir: bool = False):
  """Flags that pick a model and checkpoint (`predict`, `visualize`).

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


def lit_config_from_json(spec: str) -> ml_collections.ConfigDict:
  """A LitModel config from FILE[:KEY] (see the module docstring)."""
  obj = read_json_entry(spec)
  if isinstance(obj, dict) and 'text_model' not in obj:
    obj = obj.get('model')
  if not (isinstance(obj, dict) and {'image', 'text_model', 'text', 'pp',
                                     'out_dim'} <= set(obj)):
    raise ValueError(f'{spec!r} is not a LiT model config (an object with '
                     'image, text_model, text, pp and out_dim).')
  return ml_collections.ConfigDict(obj)


# Tokenizer models in the hub repositories of transformers' SigLIP (T5's
# SentencePiece) and SigLIP 2 (Gemma's), found beside the checkpoint.
VOCAB_FILES = ('spiece.model', 'tokenizer.model')


def _model_config(checkpoint_path, model_name, config_json, read_json,
                  hint=''):
  """The model config of a preset name, else of a JSON file (`read_json`),
  else the one a .safetensors checkpoint describes; a .npz needs one of the
  first two (`hint`: what the error adds)."""
  if model_name:
    return models_config.get_model_config(model_name)
  if config_json:
    return read_json(config_json)
  if checkpoint.is_safetensors(checkpoint_path):
    return checkpoint.safetensors_model_config(checkpoint_path)
  raise ValueError('Pass --model or --config_json for a .npz checkpoint'
                   f'{hint}.')


def _vocab_beside(checkpoint_path: str) -> str:
  """The tokenizer model in a checkpoint's directory or hub repository."""
  for name in VOCAB_FILES:
    if checkpoint_hub.is_hub_name(checkpoint_path):
      found = checkpoint_hub.resolve_beside(checkpoint_path, name)
    else:
      found = os.path.join(os.path.dirname(checkpoint_path), name)
      found = found if os.path.isfile(found) else None
    if found:
      return found
  raise ValueError(f'No vocabulary given and none ({", ".join(VOCAB_FILES)})'
                   f' beside {checkpoint_path}; pass --vocab=FILE.')


def load_lit_model(*, checkpoint_path: str, vocab_path: Optional[str] = None,
         model_name: Optional[str] = None, config_json: Optional[str] = None):
  """(model, params, tokenizer, config), all checked to fit each other.

  The model is a preset (`model_name`), a JSON config, or, for neither, the
  one a transformers SigLIP repository (`.safetensors` + config.json, a hub
  name) describes; without `vocab_path` the tokenizer model is read from
  beside the checkpoint (`VOCAB_FILES`).

  Raises:
    ValueError (CheckpointMismatchError included) or OSError, with a message
    meant for the user: unknown preset, missing or mismatched vocabulary,
    a checkpoint of another model.
  """
  config = _model_config(
      checkpoint_path, model_name, config_json, lit_config_from_json,
      ' (a transformers SigLIP repository describes itself)')
  if 'text_model' not in config:
    lit = [n for n, c in models_config.MODEL_CONFIGS.items()
           if 'text_model' in c]
    raise ValueError(f'{model_name or config_json} is not a LiT model; '
                     'zero-shot classification needs an image and a text '
                     f'tower (LiT presets: {", ".join(lit)}).')
  tokenizer = models_lit.get_tokenizer(
      config, vocab_path or _vocab_beside(checkpoint_path))
  try:
    model = models_lit.LitModel(**config)
  except TypeError as e:  # An unknown field in a JSON config.
    raise ValueError(f'Bad LiT model config: {e}') from e
  size = config.pp.size
  expected = jax.eval_shape(functools.partial(
      model.init, images=jnp.zeros((1, size, size, 3)),
      tokens=jnp.zeros((1, config.pp.max_len), jnp.int32)),
                            jax.random.key(0))['params']
  params = checkpoint.fit_params(
      checkpoint.load_params(checkpoint_path, config), expected,
      checkpoint_path, config.get('model_name'))
  return model, params, tokenizer, config


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
  config = _model_config(checkpoint_path, model_name, config_json,
                         config_from_json)
  if 'text_model' in config:
    raise ValueError(f'{model_name or config_json or checkpoint_path} is an '
                     'image-text (LiT / SigLIP) model, not a classifier: '
                     'classify with python -m vit_jax.zeroshot, or fine-tune '
                     'its image tower (configs/finetune.py:model=...).')
  params = checkpoint.load_params(checkpoint_path, config)
  num_classes = params['head']['bias'].shape[-1] if 'head' in params else 0
  if 'pre_logits' in params:
    config.representation_size = params['pre_logits']['bias'].shape[-1]

  prefix = models.num_prefix_tokens(config)
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
  from vit_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
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
