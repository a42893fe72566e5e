"""Image-text models: an image tower and a text tower embedding into one space.

One family for LiT (Zhai et al., arXiv 2111.07991), SigLIP (Zhai et al.,
arXiv 2303.15343) and SigLIP 2 (Tschannen et al., arXiv 2502.14786), as
big_vision's `models/proj/image_text/two_towers.py`: the towers are models
of their own (`img`: this project's `VisionTransformer`, any pooling;
`txt`: `TEXT_MODELS`), `t` is the learned log-temperature and `b`, present
when `bias_init` is set (SigLIP), the learned bias of the sigmoid loss.
Which loss trains it is the trainer's business, not the model's.

`apply({'params': p}, images=x, tokens=t)` returns `(zimg, ztxt, out)`:
unit-norm embeddings (`None` for a missing input), `out['t'] = exp(t)` (the
factor on the logits `zimg @ ztxt.T`), `out['b']` the bias (SigLIP only) and
the embeddings' norms before normalising (`out['img/norm']`,
`out['txt/norm']`). SigLIP's probability that image i shows text j is
`sigmoid(t * zimg[i] . ztxt[j] + b)` (`pairwise_probabilities`); LiT's
zero-shot classifier is a softmax over the same logits without `b`.
"""
from typing import Any, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models import bert
from vit_jax.models import text_transformer
from vit_jax.models import vit

TEXT_MODELS = {'bert': bert.BertModel,
               'text_transformer': text_transformer.TextTransformer}


def _normalize(x):
  norm = jnp.linalg.norm(x, axis=1, keepdims=True)
  return x / (norm + 1e-8), norm


class TwoTowerModel(nn.Module):
  """Image and text towers; fields as the LiT and SigLIP presets in
  `configs.models`.

  Attributes:
    image: the `VisionTransformer` config of the image tower.
    text_model: a key of TEXT_MODELS.
    text: that tower's fields (`BertModel` / `TextTransformer`).
    pp: preprocessing: `tokenizer_name`, `max_len` (tokens per text), `size`
      (image side), and for SentencePiece `lower` / `pad_value`
      (`lit.get_tokenizer`). Not read by the model itself.
    out_dim: (image, text) projection sizes; None means no head on that side
      (an int means both; big_vision's default, 128).
    model_name: the preset's name.
    temperature_init: the initial exp(t) (big_vision's argument).
    bias_init: None: no bias (LiT); a float: the initial `b` (SigLIP).
    train_image: whether `train=True` reaches the image tower too (dropout
      and stochastic depth when training it; False for a locked tower, LiT).
  """
  # The original release's LitModel fields first, in its order.
  image: Any
  text_model: str
  text: Any
  pp: Any = None
  out_dim: Union[int, Tuple[Optional[int], Optional[int]]] = 128
  model_name: Optional[str] = None
  temperature_init: float = 1.0
  bias_init: Optional[float] = None
  train_image: bool = False

  @nn.compact
  def __call__(self, *, images=None, tokens=None, train: bool = False):
    out_dims = self.out_dim
    if isinstance(out_dims, int):
      out_dims = (out_dims, out_dims)
    zimg = ztxt = None
    out = {}
    if tokens is not None:
      if self.text_model not in TEXT_MODELS:
        raise ValueError(f'Unknown text_model {self.text_model!r}; use one of '
                         f'{sorted(TEXT_MODELS)}.')
      text = TEXT_MODELS[self.text_model](
          **{'num_classes': out_dims[1], **(self.text or {})}, name='txt')
      ztxt, out['txt/norm'] = _normalize(text(tokens, train=train))
    if images is not None:
      image = vit.VisionTransformer(
          **{**self.image, 'num_classes': out_dims[0]}, name='img')
      if self.image.get('resnet') is None:
        # big_vision's and transformers' patch convolutions (VALID, stride
        # = patch) drop the last pixels that fill no patch: So400m/14 at
        # 384 px sees 27 x 14 = 378 of them.
        ph, pw = vit._size(self.image['patches'])  # pylint: disable=protected-access
        images = images[:, :images.shape[1] // ph * ph,
                        :images.shape[2] // pw * pw]
      zimg, out['img/norm'] = _normalize(
          image(images, train=train and self.train_image))
    init = jnp.log(self.temperature_init)
    t = self.param('t', lambda _, shape: jnp.full(shape, init, jnp.float32),
                   (1,))
    out['t'] = jnp.exp(t)
    if self.bias_init is not None:
      out['b'] = self.param(
          'b', lambda _, shape: jnp.full(shape, self.bias_init, jnp.float32),
          (1,))
    return zimg, ztxt, out


def pairwise_probabilities(zimg, ztxt, out) -> jax.Array:
  """[images, texts] probability that image i matches text j: SigLIP's
  `sigmoid(t * zimg . ztxt + b)` when the model has a bias, else (LiT) the
  softmax over the texts of `t * zimg . ztxt`."""
  logits = out['t'] * zimg @ ztxt.T
  if 'b' in out:
    return jax.nn.sigmoid(logits + out['b'])
  return jax.nn.softmax(logits, axis=-1)
