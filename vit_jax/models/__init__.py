"""Public model API, as in the original release: `models.VisionTransformer`,
`models.MlpMixer`, `models.LitModel`; and `models.TwoTowerModel` (image-text
models: LiT, SigLIP, SigLIP 2; `LitModel` is the same class).

`create(model_config, num_classes)` builds the model a config describes (a
two-tower config takes no `num_classes`),
`get_model(name, num_classes)` a preset by name; `token_grid` says how many
patches (rows, columns) a config cuts an image into.
"""
import math
from typing import Optional, Tuple

import flax.linen as nn

from vit_jax.configs import models as models_config
from vit_jax.models.lit import LitModel
from vit_jax.models.mixer import MlpMixer
from vit_jax.models.two_towers import TwoTowerModel
from vit_jax.models.vit import VisionTransformer

__all__ = ['LitModel', 'MlpMixer', 'TwoTowerModel', 'VisionTransformer',
           'create', 'get_model', 'model_class', 'token_grid']

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


def get_model(name: str, num_classes: int, **overrides) -> nn.Module:
  """The model of preset `name` (see `configs.models`)."""
  config = models_config.get_model_config(name).to_dict()
  if 'text_model' in config:
    raise ValueError(f'{name} is a LiT image-text model: build it with '
                     'models.LitModel(**configs.models.get_model_config('
                     f'{name!r})).')
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
