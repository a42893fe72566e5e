"""Public model API, as in the original release: `models.VisionTransformer`,
`models.LitModel` (image-text towers).

`get_model(name, num_classes)` builds a preset by name; `token_grid` says how
many patches (rows, columns) a config cuts an image into.
"""
import math
from typing import Tuple

from vit_jax.configs import models as models_config
from vit_jax.models_lit import LitModel
from vit_jax.models_vit import VisionTransformer

__all__ = ['LitModel', 'VisionTransformer', 'get_model', 'token_grid']


def get_model(name: str, num_classes: int, **overrides) -> VisionTransformer:
  """`VisionTransformer` for preset `name` (see `configs.models`)."""
  config = models_config.get_model_config(name).to_dict()
  if 'text_model' in config:
    raise ValueError(f'{name} is a LiT image-text model: build it with '
                     'models.LitModel(**configs.models.get_model_config('
                     f'{name!r})).')
  config.update(overrides)
  return VisionTransformer(num_classes=num_classes, **config)


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
