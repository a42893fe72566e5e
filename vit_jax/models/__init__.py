"""Public model API, as in the original release: `models.VisionTransformer`,
`models.MlpMixer`, `models.LitModel`; and `models.TwoTowerModel` (image-text
models: LiT, SigLIP, SigLIP 2; `LitModel` is the same class).

`create(model_config, num_classes)` builds the model a config describes (a
two-tower config takes no `num_classes`),
`get_model(name, num_classes)` a preset by name; `token_grid` says how many
patches (rows, columns) a config cuts an image into. As in the original,
`model_configs` is `configs.models`, and the ViT's parts are here too.
"""
import importlib
import math
from typing import Optional, Tuple

import flax.linen as nn

from vit_jax.configs import models as models_config
from vit_jax.models.lit import LitModel
from vit_jax.models.mixer import MlpMixer
from vit_jax.models import vit
from vit_jax.models.two_towers import TwoTowerModel
from vit_jax.models.vit import AddPositionEmbs
from vit_jax.models.vit import Encoder
from vit_jax.models.vit import Encoder1DBlock
from vit_jax.models.vit import MlpBlock
from vit_jax.models.vit import VisionTransformer

# The original release's name for `configs.models`.
model_configs = models_config

__all__ = ['AddPositionEmbs', 'Encoder', 'Encoder1DBlock', 'LitModel',
           'MlpBlock', 'MlpMixer', 'TwoTowerModel', 'VisionTransformer',
           'create', 'get_model', 'model_class', 'model_configs',
           'num_prefix_tokens', 'token_grid']

# Model families, each told apart by a config field only its configs have.
FAMILIES = {'num_blocks': MlpMixer, 'transformer': VisionTransformer,
            'text_model': TwoTowerModel}


def model_class(model_config) -> type:
  """The model class whose config `model_config` is (see `FAMILIES`)."""
  for field, cls in FAMILIES.items():
    if field in model_config:
      return cls
  raise ValueError(
      f'config.model has none of the fields {", ".join(FAMILIES)} that tell '
      'which model it configures; start from a preset in '
      'vit_jax/configs/models.py.')


def create(model_config, num_classes: Optional[int] = None,
           **options) -> nn.Module:
  """The model for `model_config` with `num_classes` outputs (None: its
  features); `options` are the compute settings the classifier families
  take (dtype, remat, scan).

  A two-tower model (LiT, SigLIP) has no classes: its outputs are
  embeddings of the sizes `out_dim` gives.
  """
  cls = model_class(model_config)
  if cls is TwoTowerModel:
    if num_classes is not None or options:
      given = ['num_classes'] * (num_classes is not None) + sorted(options)
      name = model_config.get('model_name') or 'image-text'
      raise ValueError(f'{", ".join(given)}: a two-tower model ({name}) '
                       'takes none; its embedding sizes are out_dim in its '
                       'config.')
    return cls(**model_config)
  return cls(num_classes=num_classes, **options, **model_config)


def get_model(name: str, num_classes: Optional[int] = None,
              **overrides) -> nn.Module:
  """The model of preset `name` (see `configs.models`).

  A LiT preset takes no `num_classes` and gives the original release's
  `LitModel`, with its methods for loading the published weights,
  tokenizer and preprocessing (`vit_jax/original/lit.py`).
  """
  config = models_config.get_model_config(name)
  if 'text_model' in config:
    if num_classes is not None:
      raise ValueError(f'{name} is an image-text model: it takes no '
                       'num_classes.')
    lit = importlib.import_module('vit_jax.original.lit')
    return lit.LitModel(**config, **overrides)
  if num_classes is None:
    raise ValueError(f'{name} is a classifier: pass num_classes (None for no '
                     'head is not an option here; use models.create).')
  config = config.to_dict()
  config.update(overrides)
  return create(config, num_classes)


def token_grid(model_config, image_size) -> Tuple[int, int]:
  """(rows, cols) of the patch grid for `image_size` (int or (H, W)).

  A hybrid's stem halves the size (SAME padding, so rounding up) twice, and
  each ResNet stage after the first once more.
  """
  h, w = (image_size, image_size) if isinstance(image_size, int) \
      else tuple(image_size)
  resnet = model_config.get('resnet')
  if resnet is not None:
    halvings = 2 + max(len(resnet['num_layers']) - 1, 0)
    for _ in range(halvings):
      h, w = math.ceil(h / 2), math.ceil(w / 2)
  size = model_config['patches']['size']
  ph, pw = (size, size) if isinstance(size, int) else size
  return h // ph, w // pw


def num_prefix_tokens(model_config) -> int:
  """Tokens before the patch tokens: 1 with a class token (`class_token`,
  by default whether `classifier` is one that has it), else 0."""
  has = model_config.get('class_token')
  if has is None:
    has = (model_config.get('classifier', 'token') in
           vit.CLASS_TOKEN_CLASSIFIERS)
  return int(has)
