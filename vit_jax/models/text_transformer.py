"""The text tower of LiT and SigLIP: a small pre-LayerNorm transformer.

The same computation and param tree as big_vision's
`models/proj/image_text/text_transformer.py` (and the original LiT
release's text transformer): token embedding `Embed_0`, a learned position
embedding `pos_embedding` [1, max_len, width], ViT encoder blocks and a final
LayerNorm under `Encoder_0/{encoderblock_N, encoder_norm}`, one vector per
text (`pool_type`), then an optional linear `head`.

There is no attention mask: padding is attended like any other token. The
SentencePiece tokenizers of these models pad with EOS (or, SigLIP 2, with a
pad id) and keep the EOS "sticky" at the end when they truncate, so reading
the *last* position ('last', the default) gives a fixed-position summary.
"""
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from vit_jax.models import vit


class _Blocks(nn.Module):
  """ViT encoder blocks and the final LayerNorm, without position embeddings
  or input dropout (big_vision's `vit.Encoder`)."""
  num_layers: int
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    for i in range(self.num_layers):
      x = vit.Encoder1DBlock(
          mlp_dim=self.mlp_dim, num_heads=self.num_heads,
          dropout_rate=self.dropout_rate, name=f'encoderblock_{i}')(
              x, not train)
    return nn.LayerNorm(name='encoder_norm')(x)


def _pool_map(module, x):
  return vit.MAPHead(num_heads=module.num_heads, mlp_dim=module.mlp_dim,
                     name='MAPHead_0')(x)


# `pool_type`: how the encoded tokens [n, len, width] become one vector
# (big_vision's names; 'gap' / 'gmp' are its aliases of 'mean' / 'max').
POOLS = {
    'last': lambda m, x: x[:, -1],
    'first': lambda m, x: x[:, 0],
    'mean': lambda m, x: x.mean(axis=1),
    'gap': lambda m, x: x.mean(axis=1),
    'max': lambda m, x: x.max(axis=1),
    'gmp': lambda m, x: x.max(axis=1),
    'map': _pool_map,
}


class TextTransformer(nn.Module):
  """Tokens [n, len] int -> [n, num_classes or width] (see module doc)."""
  num_classes: Optional[int] = None
  width: int = 512
  num_layers: int = 12
  mlp_dim: int = 2048
  num_heads: int = 8
  dropout_rate: float = 0.0
  vocab_size: int = 32_000
  pool_type: str = 'last'

  @nn.compact
  def __call__(self, tokens, *, train: bool = False):
    if self.pool_type not in POOLS:
      raise ValueError(f'text pool_type={self.pool_type!r}: use one of '
                       f'{", ".join(map(repr, POOLS))}.')
    x = nn.Embed(self.vocab_size, self.width, name='Embed_0')(tokens)
    _, length, width = x.shape
    x = x + self.param('pos_embedding',
                       nn.initializers.normal(stddev=1 / jnp.sqrt(width)),
                       (1, length, width))
    x = _Blocks(self.num_layers, self.mlp_dim, self.num_heads,
                self.dropout_rate, name='Encoder_0')(x, train=train)
    x = POOLS[self.pool_type](self, x)
    if self.num_classes:
      x = nn.Dense(self.num_classes, name='head')(x)
    return x
