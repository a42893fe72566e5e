"""The Vision Transformer (Dosovitskiy et al., arXiv 2010.11929) in Flax linen.

Module and parameter names follow the original release's linen tree
(`Transformer/encoderblock_N/{LayerNorm_0, MultiHeadDotProductAttention_0,
LayerNorm_1, MlpBlock_0}`, `embedding`, `cls`, `head`, ...), so params from
`checkpoint.load_npz` apply directly. `checkpoint/npz.py` maps these names to
the published .npz layout and back.
"""
import functools
import math
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models import resample
from vit_jax.models import resnet as models_resnet

Dtype = Any


class PatchEmbedding(nn.Module):
  """Projects each non-overlapping ph x pw patch to `hidden_size` features.

  The params are those of the original stride-(ph, pw) `nn.Conv`: `kernel`
  [ph, pw, channels, hidden] and `bias` [hidden]. The computation is a
  reshape and one matmul: the same sums as that conv, and faster than it on
  CPU (forward and kernel gradient).
  """
  hidden_size: int
  patch_size: Tuple[int, int]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, patch_size=None):
    """`patch_size` (h, w): FlexiViT, the kernel PI-resized to it at call
    time (`resample.resize_patch_embedding`, big_vision's defaults)."""
    n, h, w, c = x.shape
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*self.patch_size, c, self.hidden_size))
    bias = self.param('bias', nn.initializers.zeros, (self.hidden_size,))
    ph, pw = self.patch_size if patch_size is None else patch_size
    kernel = resample.resize_patch_embedding(kernel, (ph, pw))
    x = x.reshape(n, h // ph, ph, w // pw, pw, c)
    x = jnp.einsum('nhpwqc,pqcd->nhwd', x, kernel.astype(self.dtype))
    return x + bias.astype(self.dtype)


class AddPositionEmbs(nn.Module):
  """Adds learned 1-D position embeddings, one per token.

  They are stored for one patch grid: `stored_grid` (rows, cols), or, when
  None, the grid of the input the model was initialised with (square when
  resized). `grid` (rows, cols of the patch tokens of `x`, after
  `num_prefix_tokens` prefix tokens): resize them to it at call time
  (`resample.resample_posemb` with `method`); None: the token count must be
  the stored one.
  """
  grid: Optional[Tuple[int, int]] = None
  stored_grid: Optional[Tuple[int, int]] = None
  num_prefix_tokens: int = 0
  method: str = 'bicubic'

  @nn.compact
  def __call__(self, x):
    if self.has_variable('params', 'pos_embedding'):
      # Any stored size: flax's `param` would insist on this input's.
      pe = self.get_variable('params', 'pos_embedding')
    else:
      tokens = x.shape[1] if self.stored_grid is None else (
          self.num_prefix_tokens + self.stored_grid[0] * self.stored_grid[1])
      pe = self.param('pos_embedding', nn.initializers.normal(stddev=0.02),
                      (1, tokens, x.shape[2]))
    if self.grid is not None:
      pe = resample.resample_posemb(
          pe, self.grid, num_prefix_tokens=self.num_prefix_tokens,
          old_grid=self.stored_grid, method=self.method)
    if pe.shape[1] != x.shape[1]:
      raise ValueError(
          f'The input gives {x.shape[1]} tokens, the position embeddings '
          f'hold {pe.shape[1]}: feed the image size the model was trained '
          'at, set model.dynamic_img_size=True to resize them at call time, '
          'or fine-tune at the new size (checkpoint.load_pretrained).')
    return x + pe.astype(x.dtype)


def posemb_sincos_2d(h: int, w: int, width: int,
                     temperature: float = 10_000.) -> jnp.ndarray:
  """Fixed 2-D sin-cos position embeddings [1, h*w, width] (no parameter).

  As big_vision's `posemb_sincos_2d` (MoCo v3): a quarter of the channels
  each for sin(x), cos(x), sin(y), cos(y), in that order, with the token at
  row y, column x (row-major), over frequencies temperature^(-k/(width/4-1)).
  """
  if width % 4:
    raise ValueError(f'posemb=sincos2d needs hidden_size={width} to be a '
                     'multiple of 4.')
  y, x = jnp.mgrid[:h, :w]
  omega = 1. / temperature**(jnp.arange(width // 4) / (width // 4 - 1))
  y = y.reshape(-1)[:, None] * omega[None]
  x = x.reshape(-1)[:, None] * omega[None]
  return jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)],
                         axis=1)[None].astype(jnp.float32)


def drop_path_rates(rate: float, num_layers: int) -> np.ndarray:
  """Stochastic depth's per-block drop rates: linear from 0 at the first
  block to `rate` at the last (as timm and DeiT; one block: 0)."""
  return np.linspace(0., rate, num_layers)


def drop_path(module: nn.Module, x, rate, deterministic: bool):
  """Stochastic depth (Huang et al. 2016) on a residual branch `x`.

  Training: each example's branch is zeroed with probability `rate` (a float, or
  a traced scalar inside `nn.scan`/`nn.remat`; None: off) and the kept ones
  scaled by 1/(1-rate); the mask comes from `module`'s 'dropout' rng, so it is a
  function of the step's dropout key. Eval (`deterministic`): the identity.
  """
  if deterministic or rate is None or (isinstance(rate, float) and
                                       rate == 0.):
    return x
  keep = 1. - rate
  mask = jax.random.bernoulli(module.make_rng('dropout'), keep,
                              (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, 0).astype(x.dtype)


@jax.custom_jvp
def _softmax(x):
  """`jax.nn.softmax` over the last axis, with the cheap derivative.

  jax.nn.softmax differentiates its own formula unless the global
  `jax_softmax_custom_jvp` flag is set, and that backward pass makes several
  extra passes over the [batch, heads, tokens, tokens] weights. Same forward.
  """
  unnormalized = jnp.exp(x - jax.lax.stop_gradient(x.max(-1, keepdims=True)))
  return unnormalized / unnormalized.sum(-1, keepdims=True)


@_softmax.defjvp
def _softmax_jvp(primals, tangents):
  (x,), (x_dot,) = primals, tangents
  y = _softmax(x)
  return y, y * (x_dot - (y * x_dot).sum(-1, keepdims=True))


@jax.custom_vjp
def _matmul(x, kernel):
  """`x @ kernel` for x [..., in] and kernel [in, out], with a faster backward.

  The kernel gradient contracts the activations and the output gradient
  over all tokens. Left to itself, XLA:CPU copies the wide operand
  ([tokens, mlp_dim] in the MLP) into a transposed layout first; written
  out with the narrower operand first, the copy disappears: the ViT-Ti/16
  train step runs 4% faster on CPU (benchmarks/README.md), with the same
  forward pass and gradients equal up to float rounding. Used for the MLP
  only: routed through it, the attention projections ran slower.
  """
  return x @ kernel


def _matmul_fwd(x, kernel):
  return x @ kernel, (x, kernel)


def _matmul_bwd(residuals, dy):
  x, kernel = residuals
  x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
  if x2.shape[1] <= dy2.shape[1]:
    dkernel = x2.T @ dy2
  else:
    dkernel = (dy2.T @ x2).T
  return dy @ kernel.T, dkernel


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


class _Projection(nn.Module):
  """The kernel and bias of an `nn.DenseGeneral`, returned, not applied.

  Same parameter names, shapes and initial values as
  `nn.DenseGeneral(features, bias_init=bias_init)` contracting `in_shape`,
  so a caller can combine several projections into one matmul, or apply one
  with `_matmul`, without changing the param tree.
  """
  in_shape: Tuple[int, ...]
  features: Tuple[int, ...]
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self):
    init = nn.initializers.xavier_uniform()
    # DenseGeneral initialises the kernel flattened to 2-D (fan in x fan out).
    flat = (math.prod(self.in_shape), math.prod(self.features))
    kernel = self.param('kernel', lambda key, shape: init(key, flat).reshape(
        shape), self.in_shape + self.features)
    bias = self.param('bias', self.bias_init, self.features)
    return kernel, bias


def _fused_attention_available() -> bool:
  """Whether to call `jax.nn.dot_product_attention` (cuDNN's fused kernel).

  Only on GPU: on CPU it is the same XLA computation in a layout that runs
  slower there than the einsums below (measured in benchmarks/README.md).
  """
  return jax.default_backend() == 'gpu'


class SelfAttention(nn.Module):
  """Multi-head self-attention with the parameters of flax's MHA.

  query/key/value kernels are [hidden, heads, head_dim] and out is
  [heads, head_dim, hidden], exactly the published layout. For speed the
  three input projections run as one matmul over the kernels stacked at call
  time ([hidden, 3, heads, head_dim]; the stacking is a small copy, the
  gradient flows back to each kernel), and the query scaling is folded into
  that stacked kernel. On GPU, unless attention weights are being collected
  (`mutable=['intermediates']`) or dropped out, attention itself is
  `jax.nn.dot_product_attention`, which picks cuDNN's fused kernel where it
  applies (bfloat16) and XLA otherwise.
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
    kernels, biases = zip(*(
        _Projection((hidden,), (self.num_heads, head_dim), name=name)()
        for name in ('query', 'key', 'value')))
    # The query is divided by sqrt(head_dim), as in the original.
    scale = jnp.array([1 / math.sqrt(head_dim), 1, 1], jnp.float32)
    kernel = jnp.stack(kernels, 1) * scale[:, None, None]
    bias = jnp.stack(biases) * scale[:, None, None]
    x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
    out_kernel, out_bias = _Projection((self.num_heads, head_dim), (hidden,),
                                       name='out')()
    out_kernel, out_bias = (a.astype(self.dtype) for a in (out_kernel,
                                                           out_bias))

    fused = (_fused_attention_available() and
             not self.is_mutable_collection('intermediates') and
             (deterministic or self.dropout_rate == 0))
    if fused:
      # [3, batch, tokens, heads, head_dim]: the layout the kernel takes.
      q, k, v = jnp.einsum('bnd,dkhe->kbnhe', x, kernel) + bias[:, None, None]
      y = jax.nn.dot_product_attention(q, k, v, scale=1.0)
      return jnp.einsum('bqhd,hde->bqe', y, out_kernel) + out_bias

    # -> [3, batch, heads, tokens, head_dim]: batch and heads lead, as the
    # attention matmuls want them.
    qkv = jnp.einsum('bnd,dkhe->kbhne', x, kernel) + bias[:, None, :, None]
    q, k, v = qkv
    logits = jnp.einsum('bhqd,bhkd->bhqk', q, k,
                        preferred_element_type=jnp.float32)
    weights = _softmax(logits).astype(self.dtype)
    self.sow('intermediates', 'attention_weights', weights)
    weights = nn.Dropout(self.dropout_rate)(weights,
                                            deterministic=deterministic)
    y = jnp.einsum('bhqk,bhkd->bhqd', weights, v)
    return jnp.einsum('bhqd,hde->bqe', y, out_kernel) + out_bias


# `transformer.gelu`: the original uses GELU's tanh approximation (flax's
# default); the PyTorch ViTs (timm, transformers) use the exact (erf) GELU.
GELUS = {'tanh': functools.partial(nn.gelu, approximate=True),
         'exact': functools.partial(nn.gelu, approximate=False)}


class MlpBlock(nn.Module):
  """Dense -> GELU (`gelu`: a key of GELUS) -> Dense."""
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  gelu: str = 'tanh'

  @nn.compact
  def __call__(self, x, *, deterministic):
    def dense(x, features, name):
      """`nn.Dense(features)`'s params, applied with `_matmul`."""
      kernel, bias = _Projection(
          (x.shape[-1],), (features,),
          bias_init=nn.initializers.normal(stddev=1e-6), name=name)()
      return (_matmul(x.astype(self.dtype), kernel.astype(self.dtype)) +
              bias.astype(self.dtype))

    if self.gelu not in GELUS:
      raise ValueError(f'transformer.gelu={self.gelu!r}: use one of '
                       f'{", ".join(map(repr, GELUS))}.')
    out_dim = x.shape[-1]
    x = GELUS[self.gelu](dense(x, self.mlp_dim, 'Dense_0'))
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    x = dense(x, out_dim, 'Dense_1')
    return nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)


class Encoder1DBlock(nn.Module):
  """Pre-LayerNorm Transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)).

  `drop_path_rate` drops each residual branch per example (`drop_path`).
  """
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  gelu: str = 'tanh'
  layer_norm_eps: float = 1e-6

  @nn.compact
  def __call__(self, inputs, deterministic, drop_path_rate=None):
    x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype,
                     name='LayerNorm_0')(inputs)
    x = SelfAttention(
        num_heads=self.num_heads, dropout_rate=self.attention_dropout_rate,
        dtype=self.dtype, name='MultiHeadDotProductAttention_0')(
            x, deterministic=deterministic)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    x = drop_path(self, x, drop_path_rate, deterministic) + inputs
    y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype,
                     name='LayerNorm_1')(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
                 dtype=self.dtype, gelu=self.gelu, name='MlpBlock_0')(
                     y, deterministic=deterministic)
    return x + drop_path(self, y, drop_path_rate, deterministic)


class CrossAttention(nn.Module):
  """Multi-head attention of queries `q` [n, m, d] over `kv` [n, l, d], with
  the parameters of flax's MHA (query/key/value [d, heads, head_dim], out
  [heads, head_dim, d]); no dropout. Used by `MAPHead`."""
  num_heads: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, q, kv):
    hidden = kv.shape[-1]
    head_dim = hidden // self.num_heads

    def project(x, name):
      kernel, bias = _Projection((hidden,), (self.num_heads, head_dim),
                                 name=name)()
      return (jnp.einsum('bnd,dhe->bhne', x.astype(self.dtype),
                         kernel.astype(self.dtype)) +
              bias.astype(self.dtype)[:, None])

    q = project(q, 'query') / jnp.sqrt(head_dim).astype(self.dtype)
    k, v = project(kv, 'key'), project(kv, 'value')
    logits = jnp.einsum('bhqd,bhkd->bhqk', q, k,
                        preferred_element_type=jnp.float32)
    y = jnp.einsum('bhqk,bhkd->bhqd', _softmax(logits).astype(self.dtype), v)
    out_kernel, out_bias = _Projection((self.num_heads, head_dim), (hidden,),
                                       name='out')()
    return (jnp.einsum('bhqd,hde->bqe', y, out_kernel.astype(self.dtype)) +
            out_bias.astype(self.dtype))


class MAPHead(nn.Module):
  """Multihead attention pooling (`classifier='map'`), as big_vision's.

  A learned probe token attends over the encoder's output, then a residual
  MLP on its LayerNorm: probe' = attn(probe, x); probe' + MLP(LN(probe')).
  Parameter names are big_vision's (`MAPHead_0/{probe,
  MultiHeadDotProductAttention_0, LayerNorm_0, MlpBlock_0}`).
  """
  num_heads: int
  mlp_dim: int
  dtype: Dtype = jnp.float32
  gelu: str = 'tanh'
  layer_norm_eps: float = 1e-6

  @nn.compact
  def __call__(self, x):
    n, _, d = x.shape
    probe = self.param('probe', nn.initializers.xavier_uniform(), (1, 1, d))
    probe = jnp.tile(probe.astype(self.dtype), (n, 1, 1))
    x = CrossAttention(self.num_heads, dtype=self.dtype,
                       name='MultiHeadDotProductAttention_0')(probe, x)
    y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype,
                     name='LayerNorm_0')(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, dtype=self.dtype, gelu=self.gelu,
                 name='MlpBlock_0')(y, deterministic=True)
    return (x + y)[:, 0]


# Where a scanned Encoder keeps its blocks: `Transformer/<scan>/<block>`.
SCANNED_BLOCKS = ('encoderblocks', 'block')


class _ScanStep(nn.Module):
  """One block as the body of `nn.scan`: (x, drop-path rate) -> (x, None),
  or (x, x) with `collect` (every block's output, stacked)."""
  block_cls: Any
  block_kwargs: Any
  deterministic: bool
  collect: bool = False

  @nn.compact
  def __call__(self, x, drop_path_rate):
    # None: no stochastic depth (and Mixer blocks take no rate).
    rate = () if drop_path_rate is None else (drop_path_rate,)
    x = self.block_cls(**self.block_kwargs, name=SCANNED_BLOCKS[1])(
        x, self.deterministic, *rate)
    return x, (x if self.collect else None)


def run_blocks(block_cls, kwargs, x, *, num_blocks: int,
               deterministic: bool, rates=None, take=None, scan: bool,
               names: Tuple[str, str]):
  """Runs `num_blocks` blocks of `block_cls(**kwargs)`; called from a
  module's compact method, whose children they become.

  `take` None: returns the last block's output. `take` (0-based block
  indices): only the blocks up to the last one taken run, and their outputs
  are returned in `take`'s order. `scan`: the blocks are one `nn.scan` named
  `names[0]` over params stacked on a leading axis (`SCANNED_BLOCKS`);
  to stop early it scans over the first blocks' slice of those params
  (`nn.map_variables`), collecting each block's output. Else block i is
  named `names[1].format(i=i)`.
  """
  depth = num_blocks if take is None else max(take) + 1
  if scan:
    scanned = nn.scan(_ScanStep,
                      variable_axes={'params': 0, 'intermediates': 0},
                      split_rngs={'params': True, 'dropout': True},
                      length=depth)
    if depth < num_blocks:
      scanned = nn.map_variables(
          scanned, 'params', mutable=False,
          trans_in_fn=lambda v: jax.tree.map(lambda a: a[:depth], v))
    if rates is not None:
      rates = jnp.asarray(rates[:depth], jnp.float32)
    x, ys = scanned(block_cls, kwargs, deterministic, take is not None,
                    name=names[0])(x, rates)
    return x if take is None else [ys[i] for i in take]
  outputs = []
  for i in range(depth):
    x = block_cls(**kwargs, name=names[1].format(i=i))(
        x, deterministic, *(() if rates is None else (float(rates[i]),)))
    outputs.append(x)
  return x if take is None else [outputs[i] for i in take]


class Encoder(nn.Module):
  """Position embeddings, `num_layers` blocks, final LayerNorm.

  `remat` recomputes each block's activations in the backward pass: less
  memory for deep models at about a third more compute. `scan` runs the
  blocks as one `nn.scan` over params stored stacked (a leading layer axis,
  under `encoderblocks/block`): XLA compiles one block instead of
  `num_layers`, so deep models compile several times faster (measured in
  benchmarks/README.md); `checkpoint` converts to and from the published
  per-block layout. Attention weights collected from a scanned model are
  stacked the same way. `gelu` and `layer_norm_eps` apply to every block
  and the final LayerNorm: the defaults are the original's, PyTorch ViTs
  differ (`checkpoint/torch_layouts.py`). `stochastic_depth` is the drop-path
  rate of the last block (`drop_path_rates`). `add_position_embedding=False`
  leaves position embeddings to the caller (fixed sin-cos ones).
  `final_norm=False` leaves out the final LayerNorm (timm's fc_norm models
  apply it after pooling instead).
  """
  num_layers: int
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool = False
  scan: bool = False
  gelu: str = 'tanh'
  layer_norm_eps: float = 1e-6
  stochastic_depth: float = 0.0
  add_position_embedding: bool = True
  final_norm: bool = True
  posemb: Any = None

  @nn.compact
  def __call__(self, x, *, train, take=None, norm=False):
    """`x` [batch, tokens, hidden] -> the final LayerNorm's output, or with
    `take` (block indices) the outputs of those blocks (`run_blocks`: the
    later blocks do not run), each through the final LayerNorm if `norm`
    (and the model has one: `final_norm`). `posemb`: the fields of
    `AddPositionEmbs` other than its default (grid resizing)."""
    if not 0 <= self.stochastic_depth < 1:
      raise ValueError(f'transformer.stochastic_depth={self.stochastic_depth}'
                       ' must be in [0, 1).')
    if self.add_position_embedding:
      x = AddPositionEmbs(name='posembed_input', **(self.posemb or {}))(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    # None (not zeros) when off: no drop-path ops, even under remat.
    rates = (drop_path_rates(self.stochastic_depth, self.num_layers)
             if self.stochastic_depth else None)
    block_cls = nn.remat(Encoder1DBlock, static_argnums=(2,)) if self.remat \
        else Encoder1DBlock
    kwargs = dict(mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                  dropout_rate=self.dropout_rate,
                  attention_dropout_rate=self.attention_dropout_rate,
                  dtype=self.dtype, gelu=self.gelu,
                  layer_norm_eps=self.layer_norm_eps)
    x = run_blocks(block_cls, kwargs, x, num_blocks=self.num_layers,
                   deterministic=not train, rates=rates, take=take,
                   scan=self.scan,
                   names=(SCANNED_BLOCKS[0], 'encoderblock_{i}'))
    if not self.final_norm:
      return x
    encoder_norm = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype,
                                name='encoder_norm')
    if take is None:
      return encoder_norm(x)
    return [encoder_norm(y) for y in x] if norm else x


def _size(patches):
  """`patches` may be a ConfigDict, dict or FrozenDict with a `size` entry."""
  size = patches['size']
  return (size, size) if isinstance(size, int) else tuple(size)


# `classifier`: how the encoder's tokens become one vector; 'unpooled' and
# 'token_unpooled' (the original release's) keep every token (the head, if
# any, applies to each), 'token_unpooled' with a class token first.
CLASSIFIERS = ('token', 'gap', 'map', 'unpooled', 'token_unpooled')
CLASS_TOKEN_CLASSIFIERS = ('token', 'token_unpooled')
# `posemb`: learned (`Transformer/posembed_input/pos_embedding`, one per
# token, the class token's included) or fixed 2-D sin-cos (no parameter,
# added to the patch tokens before the class token is prepended).
POSEMBS = ('learn', 'sincos2d')


class VisionTransformer(nn.Module):
  """ViT or hybrid ResNet+ViT classifier; fields as in `configs.models`.

  Call with NHWC float images in [-1, 1]: `apply({'params': p}, x, train=...)`.
  `train=True` enables dropout (and stochastic depth,
  `transformer.stochastic_depth`) and needs an rng named 'dropout'.
  `classifier`: 'token' (a class token), 'gap' (mean of the patch tokens) or
  'map' (`MAPHead`). `posemb`: one of POSEMBS. `head_zeroinit`: the head's
  kernel starts at zero (the original's and big_vision's default), else
  LeCun normal. The defaults are the published models'.

  As a backbone (README "ViT as a backbone"): `method='forward_intermediates'`
  gives block outputs as NHWC maps. `dynamic_img_size`: learned position
  embeddings resized to the input's patch grid in the forward pass
  (`posemb_resize`: a key of `resample.POSEMB_RESIZES`; 'bicubic' is timm's,
  'bilinear' big_vision FlexiViT's), so any image size (and aspect ratio)
  works; `posemb_grid` (rows, cols): the grid they are stored for, when not
  square. `dynamic_img_pad`: the input is zero-padded at the bottom and
  right to a multiple of the patch (timm's). `patch_size=(h, w)` at call
  time: FlexiViT (the kernel PI-resized, the position embeddings resized).
  timm's pooling variants: `class_token` (default: a classifier of
  CLASS_TOKEN_CLASSIFIERS;
  True with 'gap' averages the patch tokens only) and `fc_norm` (the final
  LayerNorm after pooling instead of over the tokens, as timm's 'avg'
  default; then `norm=True` in forward_intermediates has no norm to apply,
  as in timm).
  """
  num_classes: Optional[int]
  patches: Any
  transformer: Any
  hidden_size: int
  resnet: Optional[Any] = None
  representation_size: Optional[int] = None
  classifier: str = 'token'
  posemb: str = 'learn'
  head_zeroinit: bool = True
  head_bias_init: float = 0.0
  model_name: Optional[str] = None
  dtype: Dtype = jnp.float32
  remat: bool = False
  scan: bool = False
  dynamic_img_size: bool = False
  dynamic_img_pad: bool = False
  posemb_grid: Optional[Tuple[int, int]] = None
  posemb_resize: str = 'bicubic'
  class_token: Optional[bool] = None
  fc_norm: bool = False

  def _has_class_token(self) -> bool:
    has = self.classifier in CLASS_TOKEN_CLASSIFIERS \
        if self.class_token is None else bool(self.class_token)
    if self.classifier in CLASS_TOKEN_CLASSIFIERS and not has:
      raise ValueError(f'classifier={self.classifier!r} needs class_token=True'
                       ' (or unset).')
    if self.classifier == 'map' and has:
      raise ValueError("classifier='map' pools without a class token: leave "
                       'class_token unset.')
    return has

  def _check(self):
    if self.classifier not in CLASSIFIERS:
      raise ValueError(f'classifier={self.classifier!r}: use one of '
                       f'{", ".join(map(repr, CLASSIFIERS))}.')
    if self.posemb not in POSEMBS:
      raise ValueError(f'posemb={self.posemb!r}: use one of '
                       f'{", ".join(map(repr, POSEMBS))}.')
    if self.posemb_resize not in resample.POSEMB_RESIZES:
      raise ValueError(f'posemb_resize={self.posemb_resize!r}: use one of '
                       f'{", ".join(map(repr, resample.POSEMB_RESIZES))}.')

  def _embed(self, inputs, patch_size):
    """Images -> (patch tokens [n, h*w, c], grid (h, w))."""
    x = inputs.astype(self.dtype)
    if self.resnet is not None:
      unknown = set(self.resnet) - set(models_resnet.RESNET_FIELDS)
      if unknown:  # A typo ('op=') would otherwise be silently ignored.
        raise ValueError(
            f'model.resnet has unknown field(s) {", ".join(sorted(unknown))}'
            f'; its fields are {", ".join(models_resnet.RESNET_FIELDS)}.')
      x = models_resnet.resnet_stem(
          x, num_layers=tuple(self.resnet['num_layers']),
          width_factor=self.resnet['width_factor'], dtype=self.dtype,
          std_conv=self.resnet.get('std_conv', 'original'),
          ops=self.resnet.get('ops', 'xla'))

    ph, pw = _size(self.patches) if patch_size is None else (
        (patch_size,) * 2 if isinstance(patch_size, int) else
        tuple(patch_size))
    if self.dynamic_img_pad:
      x = jnp.pad(x, ((0, 0), (0, -x.shape[1] % ph), (0, -x.shape[2] % pw),
                      (0, 0)))
    if x.shape[1] % ph or x.shape[2] % pw:
      raise ValueError(
          f'The {"ResNet feature map" if self.resnet is not None else "image"}'
          f' of size {x.shape[1]}x{x.shape[2]} (from an input of '
          f'{inputs.shape[1]}x{inputs.shape[2]}) is not divisible by the '
          f'patch size {ph}x{pw}; pick an image size that is (or set '
          'model.dynamic_img_pad=True to pad it).')
    x = PatchEmbedding(self.hidden_size, _size(self.patches),
                       dtype=self.dtype, name='embedding')(
                           x, None if patch_size is None else (ph, pw))
    n, h, w, c = x.shape
    return jnp.reshape(x, (n, h * w, c)), (h, w)

  @nn.compact
  def __call__(self, inputs, *, train, patch_size=None, take_blocks=None,
               norm=False):
    """Logits (or pre-logits without a head); `patch_size`: FlexiViT.

    `take_blocks` (0-based block indices; what `forward_intermediates`
    passes) returns instead ([n, tokens, c] outputs of those blocks, the
    patch grid, the number of prefix tokens); `norm`: through the final
    LayerNorm.
    """
    self._check()
    has_cls = self._has_class_token()
    x, grid = self._embed(inputs, patch_size)
    n, _, c = x.shape
    if self.posemb == 'sincos2d':
      x = x + posemb_sincos_2d(*grid, c).astype(x.dtype)
    if has_cls:
      cls = self.param('cls', nn.initializers.zeros, (1, 1, c))
      x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (n, 1, 1)), x], 1)

    resize = self.dynamic_img_size or patch_size is not None
    posemb = dict(grid=grid if resize else None,
                  stored_grid=(None if self.posemb_grid is None else
                               tuple(self.posemb_grid)),
                  num_prefix_tokens=int(has_cls), method=self.posemb_resize)
    encoder = Encoder(name='Transformer', dtype=self.dtype, remat=self.remat,
                      scan=self.scan,
                      add_position_embedding=self.posemb == 'learn',
                      final_norm=not self.fc_norm, posemb=posemb,
                      **self.transformer)
    if take_blocks is not None:
      return encoder(x, train=train, take=tuple(take_blocks),
                     norm=norm), grid, int(has_cls)
    x = encoder(x, train=train)
    if self.classifier == 'token':
      x = x[:, 0]
    elif self.classifier == 'gap':
      x = jnp.mean(x[:, int(has_cls):], axis=1)
    elif self.classifier == 'map':
      x = MAPHead(num_heads=self.transformer['num_heads'],
                  mlp_dim=self.transformer['mlp_dim'], dtype=self.dtype,
                  gelu=self.transformer.get('gelu', 'tanh'),
                  layer_norm_eps=self.transformer.get('layer_norm_eps', 1e-6),
                  name='MAPHead_0')(x)
    if self.fc_norm:
      x = nn.LayerNorm(
          epsilon=self.transformer.get('layer_norm_eps', 1e-6),
          dtype=self.dtype, name='fc_norm')(x)

    if self.representation_size is not None:
      x = nn.tanh(nn.Dense(self.representation_size, dtype=self.dtype,
                           name='pre_logits')(x))
    if self.num_classes:
      x = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                   kernel_init=nn.initializers.zeros if self.head_zeroinit
                   else nn.linear.default_kernel_init,
                   bias_init=nn.initializers.constant(self.head_bias_init))(x)
    return x.astype(jnp.float32)

  def forward_intermediates(self, inputs, *, train=False, indices=None,
                            norm=False, return_prefix_tokens=False,
                            patch_size=None):
    """Block outputs as NHWC maps, as timm's `forward_intermediates(x,
    indices, norm=norm, output_fmt='NCHW', intermediates_only=True)` gives
    them (transposed to NHWC).

    Use as `model.apply(variables, x, method='forward_intermediates',
    indices=...)`. `indices`: None every block, an int n the last n, a
    sequence those 0-based blocks (negative: from the end); blocks after the
    last one asked for do not run (scanned models too). Returns a list of
    [batch, rows, cols, hidden] maps in `indices`' order, the prefix (class)
    token dropped; `return_prefix_tokens`: a list of (map, prefix tokens
    [batch, prefix, hidden]) pairs instead (timm's). `norm`: each map
    through the final LayerNorm.
    """
    take = resample.take_indices(self.transformer['num_layers'], indices)
    outputs, (h, w), prefix = self(inputs, train=train, patch_size=patch_size,
                                   take_blocks=take, norm=norm)
    maps = [y[:, prefix:].reshape(y.shape[0], h, w, y.shape[-1]).astype(
        jnp.float32) for y in outputs]
    if return_prefix_tokens:
      return [(m, y[:, :prefix].astype(jnp.float32))
              for m, y in zip(maps, outputs)]
    return maps
