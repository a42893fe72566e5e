"""LiT: an image tower and a text tower embedding into one space.

"LiT: Zero-Shot Transfer with Locked-image text Tuning" (Zhai et al., arXiv
2111.07991). `LitModel` has the original release's config fields and param
tree: `img/...` is this project's ViT (its `head` is the image projection),
`txt/...` a BERT (`models/bert.py`) or a small text transformer, and `t` the
log-temperature. `apply({'params': p}, images=x, tokens=t)` returns
`(zimg, ztxt, out)`: unit-norm embeddings (`None` for a missing input) and
`out['t'] = exp(t)`, the factor on the logits `zimg @ ztxt.T`.
"""
from typing import Any, Optional, Tuple, Union

import flax.linen as nn
import jax.numpy as jnp

from vit_jax.models import bert
from vit_jax.models import vit


class BertModel(nn.Module):
  """BERT, its [CLS] token (the first), then an optional linear head."""
  config: Any  # 'base' | 'large' | a mapping of sizes (models_bert).
  num_classes: Optional[int] = None

  @nn.compact
  def __call__(self, tokens, *, train: bool = False):
    x = bert.BertEncoder(**bert.bert_config(self.config))(
        tokens, train=train)[:, 0]
    if self.num_classes:
      x = nn.Dense(self.num_classes, name='head')(x)
    return x


class _Blocks(nn.Module):
  """ViT encoder blocks and the final LayerNorm, without position embeddings
  (the original's `models_vit.Encoder(add_position_embedding=False)`)."""
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


class TextTransformer(nn.Module):
  """Token embedding + learned position embedding, ViT blocks, the *last*
  token (SentencePiece texts end with EOS), then an optional linear head."""
  num_classes: Optional[int] = None
  width: int = 512
  num_layers: int = 12
  mlp_dim: int = 2048
  num_heads: int = 8
  dropout_rate: float = 0.0
  vocab_size: int = 32_000

  @nn.compact
  def __call__(self, tokens, *, train: bool = False):
    x = nn.Embed(self.vocab_size, self.width, name='Embed_0')(tokens)
    _, length, width = x.shape
    x = x + self.param('pos_embedding',
                       nn.initializers.normal(stddev=1 / jnp.sqrt(width)),
                       (1, length, width))
    x = _Blocks(self.num_layers, self.mlp_dim, self.num_heads,
                self.dropout_rate, name='Encoder_0')(x, train=train)[:, -1]
    if self.num_classes:
      x = nn.Dense(self.num_classes, name='head')(x)
    return x


TEXT_MODELS = {'bert': BertModel, 'text_transformer': TextTransformer}


def _normalize(x):
  norm = jnp.linalg.norm(x, axis=1, keepdims=True)
  return x / (norm + 1e-8), norm


class LitModel(nn.Module):
  """Image and text towers; fields as the LiT presets in `configs.models`.

  Attributes:
    image: the ViT config of the image tower (`models_vit`).
    text_model: 'bert' or 'text_transformer'.
    text: that tower's config (`BertModel` / `TextTransformer` fields).
    pp: preprocessing: `tokenizer_name` ('bert' | 'sentencepiece'),
      `max_len` (tokens per text), `size` (image side).
    out_dim: (image, text) projection sizes; None means no head on that side
      (an int means both).
    model_name: the preset's name.
  """
  image: Any
  text_model: str
  text: Any
  pp: Any
  out_dim: Union[int, Tuple[Optional[int], Optional[int]]]
  model_name: Optional[str] = None

  @nn.compact
  def __call__(self, *, images=None, tokens=None, train: bool = False):
    """`train` enables text-tower dropout; the image tower always runs in
    eval mode (it is locked in LiT tuning)."""
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
      zimg, out['img/norm'] = _normalize(image(images, train=False))
    t = self.param('t', nn.initializers.zeros, (1,), jnp.float32)
    out['t'] = jnp.exp(t)
    return zimg, ztxt, out


def text_vocab_size(config) -> int:
  """The number of token ids the text tower of LiT `config` embeds."""
  if config['text_model'] == 'bert':
    return bert.bert_config(config['text']['config'])['vocab_size']
  return config['text'].get('vocab_size', TextTransformer.vocab_size)


def get_tokenizer(config, vocab_path: str):
  """The tokenizer `config.pp` names, checked against the text tower.

  Raises:
    ValueError: for a vocabulary file that is missing, or holds more token
      ids than the text tower embeds (a tokenizer of another model).
  """
  # TensorFlow loads only when text is tokenized, not with the models.
  from vit_jax.models import tokenizers  # pylint: disable=g-import-not-at-top
  tokenizer = tokenizers.get_tokenizer(config['pp']['tokenizer_name'])(
      vocab_path=vocab_path, max_len=config['pp']['max_len'])
  model_size = text_vocab_size(config)
  if tokenizer.vocab_size > model_size:
    raise ValueError(
        f'The {config["pp"]["tokenizer_name"]} vocabulary {vocab_path} has '
        f'{tokenizer.vocab_size} tokens, but the text tower of '
        f'{config.get("model_name") or "this model"} embeds {model_size}: '
        'this tokenizer belongs to another model. Use the vocabulary '
        'published with the checkpoint.')
  return tokenizer
