"""BiT-style ResNet pieces for the hybrid R+ViT models.

Weight-standardised convolutions and GroupNorm(32) as in BiT (Kolesnikov et
al., arXiv 1912.11370); the unit layout (conv_proj/gn_proj, conv1..3/gn1..3,
zero-initialised last GroupNorm) matches the published hybrid checkpoints.
"""
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
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
  ops: str = 'xla'

  @nn.compact
  def __call__(self, x):
    conv_cls = _CONVS[self.ops]
    conv = lambda feats, kernel, name, strides=(1, 1): conv_cls(
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
  ops: str = 'xla'

  @nn.compact
  def __call__(self, x):
    for i in range(self.block_size):
      x = ResidualUnit(self.nout, strides=self.first_stride if i == 0 else
                       (1, 1), dtype=self.dtype, std_conv=self.std_conv,
                       ops=self.ops,
                       name=f'unit{i + 1}')(x)
    return x


def _same_padding(size: int, window: int, stride: int) -> Tuple[int, int]:
  """XLA's 'SAME' padding (low, high) of one spatial dimension."""
  total = max((-(-size // stride) - 1) * stride + window - size, 0)
  return total // 2, total - total // 2


class MatmulStdConv(StdConv):
  """StdConv (square kernel and stride, 'SAME', no bias) as a matmul.

  The same sums as the convolution (`resnet.ops='matmul'`, see OPS). The
  padded input is rearranged space-to-depth (each stride x stride cell
  becomes one pixel of stride**2 * c channels), so that the kernel spans
  ceil(k / stride)**2 such pixels: those contiguous windows, stacked, times
  the rearranged kernel.
  The windows take ceil(k / stride)**2 times the input's memory: for small
  images on a CPU, not for 224 px on an accelerator.
  """

  @nn.compact
  def __call__(self, x):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    (k, k_w), (s, s_w) = pair(self.kernel_size), pair(self.strides or 1)
    if k != k_w or s != s_w or self.padding != 'SAME' or self.use_bias:
      raise ValueError(
          f"{self.name}: ops='matmul' computes square kernels and strides "
          f"with 'SAME' padding and no bias, not kernel {self.kernel_size}, "
          f'strides {self.strides}, padding {self.padding!r}, bias '
          f'{self.use_bias}.')
    n, h, w, c = x.shape
    kernel = self.param('kernel', self.kernel_init,
                        (k, k, c, self.features), self.param_dtype)
    cells = -(-k // s)  # The kernel's span in space-to-depth pixels.
    oh, ow = -(-h // s), -(-w // s)
    (top, _), (left, _) = (_same_padding(h, k, s), _same_padding(w, k, s))
    x = jnp.pad(x, ((0, 0), (top, (oh + cells - 1) * s - h - top),
                    (left, (ow + cells - 1) * s - w - left), (0, 0)))
    x = _space_to_depth(x, s)
    windows = jnp.stack([x[:, i:i + oh, j:j + ow] for i in range(cells)
                         for j in range(cells)], axis=3)
    kernel = jnp.pad(kernel, ((0, cells * s - k), (0, cells * s - k),
                              (0, 0), (0, 0)))
    kernel = _space_to_depth(kernel.reshape(1, cells * s, cells * s, -1), s)
    kernel = kernel.reshape(cells * cells, s * s * c, self.features)
    return jnp.einsum('nhwkc,kcd->nhwd', windows, kernel.astype(self.dtype))


def _space_to_depth(x, s: int):
  """[n, h*s, w*s, c] -> [n, h, w, s*s*c] (row, column, channel order)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // s, w // s, s * s * c)


def _max_pool_3x3_s2(x):
  """nn.max_pool(x, (3, 3), (2, 2), 'SAME') without a pooling op: each
  output row is the maximum of its input rows 2i, 2i+1 (one pair of a
  reshape) and 2i+2 (the next pair's first); then the same over columns."""
  for axis in (1, 2):
    size = x.shape[axis]
    out = -(-size // 2)
    top, _ = _same_padding(size, 3, 2)
    pad = [(0, 0)] * 4
    pad[axis] = (top, 2 * out + 2 - size - top)
    pairs = jnp.pad(x, pad, constant_values=-jnp.inf)
    pairs = pairs.reshape(x.shape[:axis] + (out + 1, 2) + x.shape[axis + 1:])
    first_two = jnp.max(jax.lax.slice_in_dim(pairs, 0, out, axis=axis),
                        axis=axis + 1)
    third = jax.lax.index_in_dim(
        jax.lax.slice_in_dim(pairs, 1, out + 1, axis=axis), 0, axis + 1,
        keepdims=False)
    x = jnp.maximum(first_two, third)
  return x


# `resnet.ops`: how the ResNet is computed. 'xla': XLA's convolution and
# max-pool ops (the published models' and the fastest on accelerators).
# 'matmul': the same numbers from matmuls and elementwise ops only
# (`MatmulStdConv`, `_max_pool_3x3_s2`), for small images on CPUs: on a
# 2-core AVX2-only AMD EPYC, XLA:CPU ran convolution and pooling 1.65-2.6x
# slower than on an AVX-512 Xeon, and transformer steps (matmuls) at the
# same speed.
_CONVS = {'xla': StdConv, 'matmul': MatmulStdConv}
_MAX_POOLS_3X3_S2 = {
    'xla': lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME'),
    'matmul': _max_pool_3x3_s2}
OPS = tuple(_CONVS)
# The fields of a model config's `resnet` (the arguments of resnet_stem).
RESNET_FIELDS = ('num_layers', 'width_factor', 'std_conv', 'ops')


def resnet_stem(x, *, num_layers: Sequence[int], width_factor: float,
                dtype: Dtype = jnp.float32, std_conv: str = 'original',
                ops: str = 'xla'):
  """Root conv + GroupNorm + max-pool (4x down), then the optional stages.

  Called from inside `VisionTransformer.__call__`, so the modules it creates
  are children of the ViT (`conv_root`, `gn_root`, `block1`, ...) as in the
  published files. Stage i > 1 halves the resolution again.
  """
  if std_conv not in STD_CONVS:
    raise ValueError(f'resnet.std_conv={std_conv!r}: use one of '
                     f'{", ".join(STD_CONVS)}.')
  if ops not in OPS:
    raise ValueError(f'resnet.ops={ops!r}: use one of {", ".join(OPS)}.')
  width = int(64 * width_factor)
  x = _CONVS[ops](width, (7, 7), strides=(2, 2), use_bias=False, dtype=dtype,
                   std_conv=std_conv, name='conv_root')(x)
  x = nn.relu(nn.GroupNorm(dtype=dtype, epsilon=_GROUP_NORM_EPS[std_conv],
                           name='gn_root')(x))
  x = _MAX_POOLS_3X3_S2[ops](x)
  for i, block_size in enumerate(num_layers):
    x = ResNetStage(block_size=block_size, nout=width * 2**i,
                    first_stride=(1, 1) if i == 0 else (2, 2), dtype=dtype,
                    std_conv=std_conv, ops=ops, name=f'block{i + 1}')(x)
  return x
