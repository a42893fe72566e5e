"""BiT-style ResNet pieces for the hybrid R+ViT models.

Weight-standardised convolutions and GroupNorm(32) as in BiT (Kolesnikov et
al., arXiv 1912.11370); the unit layout (conv_proj/gn_proj, conv1..3/gn1..3,
zero-initialised last GroupNorm) matches the published hybrid checkpoints.
"""
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


def weight_standardize(w, axis, eps):
  """Zero mean, unit variance over `axis` (the original uses eps=1e-5)."""
  w = w - jnp.mean(w, axis=axis)
  return w / (jnp.std(w, axis=axis) + eps)


def _timm_weight_standardize(w, axis):
  """timm's StdConv2d (a batch norm of the weight): / sqrt(var + 1e-8)."""
  w = w - jnp.mean(w, axis=axis)
  return w / jnp.sqrt(jnp.var(w, axis=axis) + 1e-8)


# `resnet.std_conv`: whose numerics the ResNet computes with. 'original':
# the original's (kernel / (std + 1e-5), flax's GroupNorm eps 1e-6); 'timm':
# timm's ResNetV2 hybrid backbone (StdConv2dSame(eps=1e-8), GroupNormAct
# eps 1e-5), so that timm's files give timm's outputs.
STD_CONVS = ('original', 'timm')
_GROUP_NORM_EPS = {'original': 1e-6, 'timm': 1e-5}


class StdConv(nn.Conv):
  """A convolution whose kernel is standardised every time it is used."""
  std_conv: str = 'original'

  def param(self, name, init_fn, *init_args, **init_kwargs):
    param = super().param(name, init_fn, *init_args, **init_kwargs)
    if name == 'kernel':
      if self.std_conv == 'timm':
        param = _timm_weight_standardize(param, axis=[0, 1, 2])
      else:
        param = weight_standardize(param, axis=[0, 1, 2], eps=1e-5)
    return param


class ResidualUnit(nn.Module):
  """Bottleneck unit: 1x1 -> 3x3 (strided) -> 1x1 (x4), projection if needed."""
  features: int
  strides: Tuple[int, int] = (1, 1)
  dtype: Dtype = jnp.float32
  std_conv: str = 'original'

  @nn.compact
  def __call__(self, x):
    conv = lambda feats, kernel, name, strides=(1, 1): StdConv(
        feats, kernel, strides=strides, use_bias=False, dtype=self.dtype,
        std_conv=self.std_conv, name=name)
    norm = lambda name, **kw: nn.GroupNorm(
        dtype=self.dtype, epsilon=_GROUP_NORM_EPS[self.std_conv], name=name,
        **kw)

    residual = x
    if x.shape[-1] != self.features * 4 or tuple(self.strides) != (1, 1):
      residual = conv(self.features * 4, (1, 1), 'conv_proj', self.strides)(x)
      residual = norm('gn_proj')(residual)

    y = nn.relu(norm('gn1')(conv(self.features, (1, 1), 'conv1')(x)))
    y = conv(self.features, (3, 3), 'conv2', self.strides)(y)
    y = nn.relu(norm('gn2')(y))
    y = conv(self.features * 4, (1, 1), 'conv3')(y)
    y = norm('gn3', scale_init=nn.initializers.zeros)(y)
    return nn.relu(residual + y)


class ResNetStage(nn.Module):
  """`block_size` residual units; only the first one strides."""
  block_size: int
  nout: int
  first_stride: Tuple[int, int]
  dtype: Dtype = jnp.float32
  std_conv: str = 'original'

  @nn.compact
  def __call__(self, x):
    for i in range(self.block_size):
      x = ResidualUnit(self.nout, strides=self.first_stride if i == 0 else
                       (1, 1), dtype=self.dtype, std_conv=self.std_conv,
                       name=f'unit{i + 1}')(x)
    return x


def resnet_stem(x, *, num_layers: Sequence[int], width_factor: float,
                dtype: Dtype = jnp.float32, std_conv: str = 'original'):
  """Root conv + GroupNorm + max-pool (4x down), then the optional stages.

  Called from inside `VisionTransformer.__call__`, so the modules it creates
  are children of the ViT (`conv_root`, `gn_root`, `block1`, ...) as in the
  published files. Stage i > 1 halves the resolution again.
  """
  if std_conv not in STD_CONVS:
    raise ValueError(f'resnet.std_conv={std_conv!r}: use one of '
                     f'{", ".join(STD_CONVS)}.')
  width = int(64 * width_factor)
  x = StdConv(width, (7, 7), strides=(2, 2), use_bias=False, dtype=dtype,
              std_conv=std_conv, name='conv_root')(x)
  x = nn.relu(nn.GroupNorm(dtype=dtype, epsilon=_GROUP_NORM_EPS[std_conv],
                           name='gn_root')(x))
  x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='SAME')
  for i, block_size in enumerate(num_layers):
    x = ResNetStage(block_size=block_size, nout=width * 2**i,
                    first_stride=(1, 1) if i == 0 else (2, 2), dtype=dtype,
                    std_conv=std_conv, name=f'block{i + 1}')(x)
  return x
