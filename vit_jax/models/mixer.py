"""MLP-Mixer (Tolstikhin et al., arXiv 2105.01601) in Flax linen.

The param tree is that of the published checkpoints (gs://mixer_models):
`stem`, `MixerBlock_{i}/{LayerNorm_0, token_mixing/Dense_{0,1}, LayerNorm_1,
channel_mixing/Dense_{0,1}}`, `pre_head_layer_norm`, `head`; those files were
written by linen already, so `checkpoint.load_npz` applies them as they are.
Unlike ViT there are no position embeddings: the token-mixing weights
themselves are [tokens, tokens_mlp_dim], so a model is tied to one token
count (image size / patch size) and cannot change resolution.
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from vit_jax.models import resample
from vit_jax.models import vit

Dtype = Any

# Where a scanned Mixer keeps its blocks: `<scan>/<block>` at the top.
SCANNED_BLOCKS = ('MixerBlocks', vit.SCANNED_BLOCKS[1])


class MlpBlock(nn.Module):
  """Dense -> GELU -> Dense, over the last axis; initialised as the
  original's (lecun normal, zero biases). `gelu`: a key of
  `models_vit.GELUS` ('tanh', the original's; 'exact', timm's)."""
  mlp_dim: int
  dtype: Dtype = jnp.float32
  gelu: str = 'tanh'

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.mlp_dim, dtype=self.dtype, name='Dense_0')(x)
    y = vit.GELUS[self.gelu](y)
    return nn.Dense(x.shape[-1], dtype=self.dtype, name='Dense_1')(y)


class MixerBlock(nn.Module):
  """x + token-MLP(LN(x)) over the tokens, then x + channel-MLP(LN(x)).

  `deterministic` is unused (a Mixer has no dropout); it is there so the
  block has the call signature that `models_vit`'s scan body expects.
  """
  tokens_mlp_dim: int
  channels_mlp_dim: int
  dtype: Dtype = jnp.float32
  gelu: str = 'tanh'

  @nn.compact
  def __call__(self, x, deterministic):
    del deterministic
    y = nn.LayerNorm(dtype=self.dtype, name='LayerNorm_0')(x)
    y = jnp.swapaxes(y, 1, 2)  # [batch, channels, tokens]: mix the tokens.
    y = MlpBlock(self.tokens_mlp_dim, dtype=self.dtype, gelu=self.gelu,
                 name='token_mixing')(y)
    x = x + jnp.swapaxes(y, 1, 2)
    y = nn.LayerNorm(dtype=self.dtype, name='LayerNorm_1')(x)
    return x + MlpBlock(self.channels_mlp_dim, dtype=self.dtype,
                        gelu=self.gelu, name='channel_mixing')(y)


class MlpMixer(nn.Module):
  """Mixer classifier; fields as in `configs.models` (`Mixer-B_16`, ...).

  Call with NHWC float images in [-1, 1]: `apply({'params': p}, x,
  train=...)` (`train` changes nothing: there is no dropout). `remat`,
  `scan` and `dtype` work as for `VisionTransformer`; a scanned model keeps
  its blocks stacked under `MixerBlocks/block` (`checkpoint` converts).
  With `num_classes` 0 or None the output is the pooled representation.
  """
  num_classes: Optional[int]
  patches: Any
  hidden_dim: int
  num_blocks: int
  tokens_mlp_dim: int
  channels_mlp_dim: int
  gelu: str = 'tanh'  # 'exact' for timm's Mixers (see MlpBlock).
  model_name: Optional[str] = None
  dtype: Dtype = jnp.float32
  remat: bool = False
  scan: bool = False

  @nn.compact
  def __call__(self, inputs, *, train, take_blocks=None, norm=False):
    """Logits (or the pooled representation). `take_blocks` (what
    `forward_intermediates` passes): those blocks' outputs [n, tokens, c]
    and the patch grid instead; `norm`: through `pre_head_layer_norm`."""
    ph, pw = vit._size(self.patches)  # pylint: disable=protected-access
    if inputs.shape[1] % ph or inputs.shape[2] % pw:
      raise ValueError(
          f'The image of size {inputs.shape[1]}x{inputs.shape[2]} is not '
          f'divisible by the patch size {ph}x{pw}; pick an image size that '
          'is.')
    # The stem is the original's stride-(ph, pw) conv, computed as a matmul.
    x = vit.PatchEmbedding(self.hidden_dim, (ph, pw), dtype=self.dtype,
                           name='stem')(inputs.astype(self.dtype))
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))

    block_cls = nn.remat(MixerBlock, static_argnums=(2,)) if self.remat \
        else MixerBlock
    if self.gelu not in vit.GELUS:
      raise ValueError(f'gelu={self.gelu!r}: use one of '
                       f'{", ".join(vit.GELUS)}.')
    kwargs = dict(tokens_mlp_dim=self.tokens_mlp_dim,
                  channels_mlp_dim=self.channels_mlp_dim, dtype=self.dtype,
                  gelu=self.gelu)
    x = vit.run_blocks(block_cls, kwargs, x, num_blocks=self.num_blocks,
                       deterministic=not train, take=take_blocks,
                       scan=self.scan,
                       names=(SCANNED_BLOCKS[0], 'MixerBlock_{i}'))
    head_norm = nn.LayerNorm(dtype=self.dtype, name='pre_head_layer_norm')
    if take_blocks is not None:
      return [head_norm(y) for y in x] if norm else x, (h, w)
    x = jnp.mean(head_norm(x), axis=1)
    if self.num_classes:
      x = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                   kernel_init=nn.initializers.zeros)(x)
    return x.astype(jnp.float32)

  def forward_intermediates(self, inputs, *, train=False, indices=None,
                            norm=False):
    """Block outputs as NHWC maps [batch, rows, cols, hidden], as
    `VisionTransformer.forward_intermediates` (a Mixer has no prefix tokens
    and no other image size); `norm`: through `pre_head_layer_norm`."""
    take = resample.take_indices(self.num_blocks, indices)
    outputs, (h, w) = self(inputs, train=train, take_blocks=take, norm=norm)
    return [y.reshape(y.shape[0], h, w, y.shape[-1]).astype(jnp.float32)
            for y in outputs]
