"""The Vision Transformer (Dosovitskiy et al., arXiv 2010.11929) in Flax linen.

Module and parameter names follow the original release's linen tree
(`Transformer/encoderblock_N/{LayerNorm_0, MultiHeadDotProductAttention_0,
LayerNorm_1, MlpBlock_0}`, `embedding`, `cls`, `head`, ...), so params from
`checkpoint.load_npz` apply directly. `checkpoint.py` maps these names to the
published .npz layout and back.
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax import models_resnet

Dtype = Any


class AddPositionEmbs(nn.Module):
  """Adds learned 1-D position embeddings, one per token."""

  @nn.compact
  def __call__(self, x):
    shape = (1, x.shape[1], x.shape[2])
    pe = self.param('pos_embedding', nn.initializers.normal(stddev=0.02), shape)
    return x + pe.astype(x.dtype)


class SelfAttention(nn.Module):
  """Multi-head self-attention with the parameters of flax's MHA.

  query/key/value kernels are [hidden, heads, head_dim] and out is
  [heads, head_dim, hidden], exactly the published layout. The attention itself
  goes through `jax.nn.dot_product_attention` (a fused kernel where the backend
  has one); the weights are materialised only when they are needed: attention
  dropout, or when the caller collects them (`mutable=['intermediates']`).
  """
  num_heads: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, deterministic):
    hidden = x.shape[-1]
    if hidden % self.num_heads:
      raise ValueError(f'hidden_size={hidden} is not divisible by '
                       f'num_heads={self.num_heads}.')
    head_dim = hidden // self.num_heads
    proj = lambda name: nn.DenseGeneral(
        features=(self.num_heads, head_dim), dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform(), name=name)(x)
    q, k, v = proj('query'), proj('key'), proj('value')

    use_dropout = self.dropout_rate > 0.0 and not deterministic
    if use_dropout or self.is_mutable_collection('intermediates'):
      logits = jnp.einsum('bqhd,bkhd->bhqk', q / jnp.sqrt(head_dim).astype(
          q.dtype), k)
      weights = jax.nn.softmax(logits.astype(jnp.float32)).astype(q.dtype)
      self.sow('intermediates', 'attention_weights', weights)
      if use_dropout:
        weights = nn.Dropout(self.dropout_rate)(
            weights, deterministic=False)
      y = jnp.einsum('bhqk,bkhd->bqhd', weights, v)
    else:
      y = jax.nn.dot_product_attention(q, k, v)
    return nn.DenseGeneral(
        features=hidden, axis=(-2, -1), dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform(), name='out')(y)


class MlpBlock(nn.Module):
  """Dense -> GELU (tanh approximation, as the original) -> Dense."""
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, deterministic):
    dense = lambda features: nn.Dense(
        features, dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=nn.initializers.normal(stddev=1e-6))
    out_dim = x.shape[-1]
    x = nn.gelu(dense(self.mlp_dim)(x), approximate=True)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    x = dense(out_dim)(x)
    return nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)


class Encoder1DBlock(nn.Module):
  """Pre-LayerNorm Transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, deterministic):
    x = nn.LayerNorm(dtype=self.dtype, name='LayerNorm_0')(inputs)
    x = SelfAttention(
        num_heads=self.num_heads, dropout_rate=self.attention_dropout_rate,
        dtype=self.dtype, name='MultiHeadDotProductAttention_0')(
            x, deterministic=deterministic)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    x = x + inputs
    y = nn.LayerNorm(dtype=self.dtype, name='LayerNorm_1')(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
                 dtype=self.dtype, name='MlpBlock_0')(
                     y, deterministic=deterministic)
    return x + y


class Encoder(nn.Module):
  """Position embeddings, `num_layers` blocks, final LayerNorm.

  `remat` recomputes each block's activations in the backward pass: less
  memory for deep models at about a third more compute.
  """
  num_layers: int
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    x = AddPositionEmbs(name='posembed_input')(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    block_cls = nn.remat(Encoder1DBlock, static_argnums=(2,)) if self.remat \
        else Encoder1DBlock
    for i in range(self.num_layers):
      x = block_cls(
          mlp_dim=self.mlp_dim, num_heads=self.num_heads,
          dropout_rate=self.dropout_rate,
          attention_dropout_rate=self.attention_dropout_rate,
          dtype=self.dtype, name=f'encoderblock_{i}')(x, not train)
    return nn.LayerNorm(dtype=self.dtype, name='encoder_norm')(x)


def _size(patches):
  """`patches` may be a ConfigDict, dict or FrozenDict with a `size` entry."""
  size = patches['size']
  return (size, size) if isinstance(size, int) else tuple(size)


class VisionTransformer(nn.Module):
  """ViT or hybrid ResNet+ViT classifier; fields as in `configs.models`.

  Call with NHWC float images in [-1, 1]: `apply({'params': p}, x, train=...)`.
  `train=True` enables dropout and needs an rng named 'dropout'.
  """
  num_classes: Optional[int]
  patches: Any
  transformer: Any
  hidden_size: int
  resnet: Optional[Any] = None
  representation_size: Optional[int] = None
  classifier: str = 'token'
  head_bias_init: float = 0.0
  model_name: Optional[str] = None
  dtype: Dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, inputs, *, train):
    if self.classifier not in ('token', 'gap'):
      raise ValueError(f"classifier={self.classifier!r}: use 'token' or 'gap'.")
    x = inputs.astype(self.dtype)
    if self.resnet is not None:
      x = models_resnet.resnet_stem(
          x, num_layers=tuple(self.resnet['num_layers']),
          width_factor=self.resnet['width_factor'], dtype=self.dtype)

    ph, pw = _size(self.patches)
    if x.shape[1] % ph or x.shape[2] % pw:
      raise ValueError(
          f'The {"ResNet feature map" if self.resnet is not None else "image"}'
          f' of size {x.shape[1]}x{x.shape[2]} (from an input of '
          f'{inputs.shape[1]}x{inputs.shape[2]}) is not divisible by the '
          f'patch size {ph}x{pw}; pick an image size that is.')
    x = nn.Conv(self.hidden_size, (ph, pw), strides=(ph, pw), padding='VALID',
                dtype=self.dtype, name='embedding')(x)
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))
    if self.classifier == 'token':
      cls = self.param('cls', nn.initializers.zeros, (1, 1, c))
      x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (n, 1, 1)), x], 1)

    x = Encoder(name='Transformer', dtype=self.dtype, remat=self.remat,
                **self.transformer)(x, train=train)
    x = x[:, 0] if self.classifier == 'token' else jnp.mean(x, axis=1)

    if self.representation_size is not None:
      x = nn.tanh(nn.Dense(self.representation_size, dtype=self.dtype,
                           name='pre_logits')(x))
    if self.num_classes:
      x = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                   kernel_init=nn.initializers.zeros,
                   bias_init=nn.initializers.constant(self.head_bias_init))(x)
    return x.astype(jnp.float32)
