"""A BERT encoder (Devlin et al., arXiv 1810.04805), flaxformer's param tree.

LiT's BERT text towers were trained with flaxformer's `BertEncoder`; this is
the same computation written in plain linen, with the same module names so
that the published LiT files (`txt/BertEncoder_0/...`) load as they are:

  embedder/embedders_{token_ids, position_ids, segment_ids}/embedding
  layer_norm                      (over the summed embeddings)
  encoder_block/layer_sequence/layers_{i}/
    attention_block/{attention_layer/{query, key, value}, dense_layer,
                     layer_norm}
    mlp_block/{mlp/dense_layer, dense_layer, layer_norm}

Unlike the ViT blocks, BERT normalises *after* each residual sum (post-LN),
with epsilon 1e-12. Attention kernels are 2-D ([hidden, heads * head_dim]),
the query is divided by sqrt(head_dim), and padding (token id 0) is masked
out of the keys. GELU is flax's default tanh approximation, as flaxformer's.
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

# flaxformer.architectures.bert.configs: BertBaseConfig, BertLargeConfig.
BERT_CONFIGS = {
    'base': dict(hidden_size=768, intermediate_dim=3072, num_hidden_layers=12,
                 num_attention_heads=12, vocab_size=30522, max_length=512,
                 num_segments=2, layer_norm_epsilon=1e-12, dropout_rate=0.1),
    'large': dict(hidden_size=1024, intermediate_dim=4096,
                  num_hidden_layers=24, num_attention_heads=16,
                  vocab_size=30522, max_length=512, num_segments=2,
                  layer_norm_epsilon=1e-12, dropout_rate=0.1),
}

_INIT = nn.initializers.truncated_normal(stddev=0.02)
_MASKED = -1e10  # flaxformer's attention bias for masked-out keys.


def bert_config(config: Any) -> dict:
  """'base' | 'large' | a mapping of `BertEncoder` fields -> the fields.

  A mapping may give only some sizes; the others are BERT-base's.
  """
  if isinstance(config, str):
    if config not in BERT_CONFIGS:
      raise ValueError(f'Unknown BERT config {config!r}; use one of '
                       f'{sorted(BERT_CONFIGS)} or a mapping of sizes.')
    return dict(BERT_CONFIGS[config])
  unknown = set(config) - set(BERT_CONFIGS['base'])
  if unknown:
    raise ValueError(f'Unknown BERT config fields {sorted(unknown)}; known: '
                     f'{sorted(BERT_CONFIGS["base"])}.')
  return {**BERT_CONFIGS['base'], **dict(config)}


class _MultiEmbed(nn.Module):
  """Sum of one embedding table per input ('token_ids', ...)."""
  sizes: Any  # {input name: number of embeddings}
  features: int

  @nn.compact
  def __call__(self, **inputs):
    return sum(
        nn.Embed(self.sizes[k], self.features, embedding_init=_INIT,
                 name=f'embedders_{k}')(v) for k, v in inputs.items())


class _SelfAttention(nn.Module):
  """flaxformer's MultiHeadDotProductAttention without output projection."""
  num_heads: int
  dropout_rate: float

  @nn.compact
  def __call__(self, x, mask, *, deterministic):
    *batch, length, hidden = x.shape
    if hidden % self.num_heads:
      raise ValueError(f'BERT hidden_size={hidden} is not divisible by '
                       f'num_attention_heads={self.num_heads}.')
    head_dim = hidden // self.num_heads
    q, k, v = (nn.Dense(hidden, kernel_init=_INIT, name=name)(x).reshape(
        *batch, length, self.num_heads, head_dim)
               for name in ('query', 'key', 'value'))
    q = q / jnp.sqrt(head_dim).astype(q.dtype)
    logits = jnp.einsum('...qhd,...khd->...hqk', q, k)
    logits = logits + jnp.where(mask, 0.0, _MASKED).astype(logits.dtype)
    weights = nn.Dropout(self.dropout_rate)(
        nn.softmax(logits), deterministic=deterministic)
    return jnp.einsum('...hqk,...khd->...qhd', weights, v)


class _AttentionBlock(nn.Module):
  num_heads: int
  dropout_rate: float
  epsilon: float

  @nn.compact
  def __call__(self, x, mask, *, deterministic):
    y = _SelfAttention(self.num_heads, self.dropout_rate,
                       name='attention_layer')(x, mask,
                                               deterministic=deterministic)
    y = nn.Dense(x.shape[-1], kernel_init=_INIT, name='dense_layer')(
        y.reshape(x.shape))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    return nn.LayerNorm(epsilon=self.epsilon, name='layer_norm')(x + y)


class _Mlp(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return nn.gelu(nn.Dense(self.features, kernel_init=_INIT,
                            name='dense_layer')(x))


class _MlpBlock(nn.Module):
  intermediate_dim: int
  dropout_rate: float
  epsilon: float

  @nn.compact
  def __call__(self, x, *, deterministic):
    y = _Mlp(self.intermediate_dim, name='mlp')(x)
    y = nn.Dense(x.shape[-1], kernel_init=_INIT, name='dense_layer')(y)
    # Broadcast along the sequence, as flaxformer's.
    y = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
        y, deterministic=deterministic)
    return nn.LayerNorm(epsilon=self.epsilon, name='layer_norm')(x + y)


class _EncoderLayer(nn.Module):
  num_heads: int
  intermediate_dim: int
  dropout_rate: float
  epsilon: float

  @nn.compact
  def __call__(self, x, mask, *, deterministic):
    x = _AttentionBlock(self.num_heads, self.dropout_rate, self.epsilon,
                        name='attention_block')(x, mask,
                                                deterministic=deterministic)
    return _MlpBlock(self.intermediate_dim, self.dropout_rate, self.epsilon,
                     name='mlp_block')(x, deterministic=deterministic)


class _LayerSequence(nn.Module):
  num_layers: int
  layer_kwargs: Any

  @nn.compact
  def __call__(self, x, mask, *, deterministic):
    for i in range(self.num_layers):
      x = _EncoderLayer(**self.layer_kwargs, name=f'layers_{i}')(
          x, mask, deterministic=deterministic)
    return x


class _EncoderBlock(nn.Module):
  num_layers: int
  layer_kwargs: Any

  @nn.compact
  def __call__(self, x, mask, *, deterministic):
    return _LayerSequence(self.num_layers, self.layer_kwargs,
                          name='layer_sequence')(x, mask,
                                                 deterministic=deterministic)


class BertEncoder(nn.Module):
  """Token ids [batch, length] -> features [batch, length, hidden_size].

  Fields are those of flaxformer's `BertEncoder` (see `BERT_CONFIGS`).
  Position ids are 0..length-1, segment ids 0, and token id 0 is padding.
  """
  hidden_size: int
  intermediate_dim: int
  vocab_size: int
  max_length: int
  num_segments: int
  num_hidden_layers: int
  num_attention_heads: int
  dropout_rate: float = 0.0
  layer_norm_epsilon: float = 1e-12

  @nn.compact
  def __call__(self, token_ids, *, train: bool = False):
    batch, length = token_ids.shape
    if length > self.max_length:
      raise ValueError(f'{length} tokens per text, but this BERT has '
                       f'max_length={self.max_length} positions; tokenize '
                       f'with max_len <= {self.max_length}.')
    x = _MultiEmbed(
        dict(token_ids=self.vocab_size, position_ids=self.max_length,
             segment_ids=self.num_segments), self.hidden_size,
        name='embedder')(
            token_ids=token_ids,
            position_ids=jnp.tile(jnp.arange(length)[None], (batch, 1)),
            segment_ids=jnp.zeros_like(token_ids))
    x = nn.LayerNorm(epsilon=self.layer_norm_epsilon, name='layer_norm')(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    keep = token_ids != 0
    mask = (keep[:, None, :, None] & keep[:, None, None, :])
    layer_kwargs = dict(num_heads=self.num_attention_heads,
                        intermediate_dim=self.intermediate_dim,
                        dropout_rate=self.dropout_rate,
                        epsilon=self.layer_norm_epsilon)
    return _EncoderBlock(self.num_hidden_layers, layer_kwargs,
                         name='encoder_block')(x, mask,
                                               deterministic=not train)


class BertModel(nn.Module):
  """LiT's BERT text tower: BERT, its [CLS] token (the first), then an
  optional linear head."""
  config: Any  # 'base' | 'large' | a mapping of sizes (`bert_config`).
  num_classes: Optional[int] = None

  @nn.compact
  def __call__(self, tokens, *, train: bool = False):
    x = BertEncoder(**bert_config(self.config))(tokens, train=train)[:, 0]
    if self.num_classes:
      x = nn.Dense(self.num_classes, name='head')(x)
    return x
