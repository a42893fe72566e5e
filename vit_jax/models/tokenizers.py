"""Tokenizers of the LiT text towers, token for token as the original's.

`get_tokenizer('bert' | 'sentencepiece')(vocab_path=..., max_len=...)` gives
a tokenizer that, called on a list of strings, returns int32 tokens
[n, max_len] as a numpy array; `preprocess_tf(text)` does the same for one
scalar string tensor inside a tf.data pipeline. Both run on tensorflow-text
(pinned to the TensorFlow version in requirements.txt).

- 'bert': lower-cased WordPiece; `[CLS]` first, then at most max_len - 1
  word pieces, zero (`[PAD]`) padded. No `[SEP]`. Words not in the
  vocabulary become word pieces, or `[UNK]` when they have none.
- 'sentencepiece': the pieces (no BOS), clipped to max_len - 1, then the
  model's EOS, padded with EOS: the last token is always EOS, which the text
  transformer reads (big_vision's `eos='sticky', pad_value=EOS`). SigLIP's
  presets set `lower=True` (big_vision's `tokenize` lower-cases by
  default); SigLIP 2's Gemma tokenizer pads with its pad id
  (`pad_value=0`), so there the last token is EOS only for a text that was
  cut.
"""
import dataclasses
import os
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text

# Tokenizing runs on the CPU; JAX owns the accelerators.
tf.config.set_visible_devices([], 'GPU')


def _read_vocab(vocab_path: str, mode: str):
  """The file's contents; a clear error for a missing one."""
  if '://' not in vocab_path and not os.path.isfile(vocab_path):
    raise FileNotFoundError(
        f'Vocabulary file {vocab_path!r} does not exist. LiT vocabularies are '
        'published beside the checkpoints (gs://vit_models/lit/NAME.txt for '
        'BERT, NAME.model for SentencePiece); pass its local path.')
  with tf.io.gfile.GFile(vocab_path, mode) as f:
    return f.read()


def _check_max_len(max_len: int) -> None:
  if max_len < 2:
    raise ValueError(f'max_len={max_len}: a text needs at least 2 tokens '
                     '(its content and the [CLS] / EOS token).')


@dataclasses.dataclass(frozen=True)
class BertTokenizer:
  """Lower-cased WordPiece with `[CLS]` first and zero padding."""
  vocab_path: str
  max_len: int
  cls_token: int = dataclasses.field(init=False)
  vocab_size: int = dataclasses.field(init=False)
  _tokenizer: Any = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    _check_max_len(self.max_len)
    vocab = _read_vocab(self.vocab_path, 'r').split('\n')
    if vocab and not vocab[-1]:
      vocab.pop()  # The newline that ends the last line.
    if '[CLS]' not in vocab:
      raise ValueError(f'{self.vocab_path!r} is not a BERT WordPiece '
                       'vocabulary (one token per line): it has no [CLS].')
    tokenizer = tensorflow_text.BertTokenizer(
        self.vocab_path, token_out_type=tf.int32, lower_case=True)
    # Frozen dataclass: fields set once, here.
    object.__setattr__(self, 'cls_token', vocab.index('[CLS]'))
    object.__setattr__(self, 'vocab_size', len(vocab))
    object.__setattr__(self, '_tokenizer', tokenizer)

  def _tokenize(self, texts):
    pieces = self._tokenizer.tokenize(texts)  # [n, words, pieces], ragged.
    tokens, _ = tensorflow_text.pad_model_inputs(pieces, self.max_len - 1)
    cls = tf.fill([tf.shape(tokens)[0], 1], self.cls_token)
    return tf.concat([cls, tokens], axis=1)

  def preprocess_tf(self, text):
    """One scalar string tensor -> int32 [max_len], in a TF graph."""
    return self._tokenize(text[None])[0]

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    return self._tokenize(tf.constant(list(texts), tf.string)).numpy()


@dataclasses.dataclass(frozen=True)
class SentencepieceTokenizer:
  """SentencePiece with a sticky EOS; padding with EOS unless `pad_value`
  (a token id) says otherwise; `lower`: lower-case texts first."""
  vocab_path: str
  max_len: int
  lower: bool = False
  pad_value: Optional[int] = None
  eos_token: int = dataclasses.field(init=False)
  vocab_size: int = dataclasses.field(init=False)
  _tokenizer: Any = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    _check_max_len(self.max_len)
    try:
      tokenizer = tensorflow_text.SentencepieceTokenizer(
          model=_read_vocab(self.vocab_path, 'rb'), add_eos=True)
      # The id add_eos appends ('</s>' in T5's models, '<eos>' in Gemma's).
      eos = int(tokenizer.tokenize('')[-1])
      size = int(tokenizer.vocab_size())
    except tf.errors.OpError as e:
      raise ValueError(f'{self.vocab_path!r} is not a SentencePiece model '
                       f'({e.message.splitlines()[0]}).') from e
    if self.pad_value is not None and not 0 <= self.pad_value < size:
      raise ValueError(f'pad_value={self.pad_value} is not a token id of '
                       f'{self.vocab_path!r} ({size} pieces).')
    object.__setattr__(self, 'eos_token', eos)
    object.__setattr__(self, 'vocab_size', size)
    object.__setattr__(self, '_tokenizer', tokenizer)

  def preprocess_tf(self, text):
    """One scalar string tensor -> int32 [max_len], in a TF graph."""
    if self.lower:
      text = tf.strings.lower(text)
    # With add_eos the pieces end with EOS. Cut, EOS goes back at the end.
    tokens = self._tokenizer.tokenize(text)
    cut = tf.concat([tokens[:self.max_len - 1], [self.eos_token]], 0)
    pad = self.eos_token if self.pad_value is None else self.pad_value
    padded = tf.pad(tokens, [(0, tf.maximum(
        self.max_len - tf.shape(tokens)[0], 0))], constant_values=pad)
    return tf.ensure_shape(
        tf.cond(tf.shape(tokens)[0] > self.max_len, lambda: cut,
                lambda: padded), [self.max_len])

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    if not texts:
      return np.zeros((0, self.max_len), np.int32)
    return tf.stack([self.preprocess_tf(tf.constant(t, tf.string))
                     for t in texts]).numpy()


TOKENIZERS = {'bert': BertTokenizer, 'sentencepiece': SentencepieceTokenizer}


def get_tokenizer(name: str):
  """The tokenizer class for 'bert' or 'sentencepiece'."""
  if name not in TOKENIZERS:
    raise ValueError(f'Unknown tokenizer {name!r}; use one of '
                     f'{sorted(TOKENIZERS)}.')
  return TOKENIZERS[name]
