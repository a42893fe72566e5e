"""LiT: an image tower and a text tower embedding into one space.

"LiT: Zero-Shot Transfer with Locked-image text Tuning" (Zhai et al., arXiv
2111.07991). `LitModel` has the original release's config fields and param
tree: `img/...` is this project's ViT (its `head` is the image projection),
`txt/...` a BERT (`models/bert.py`) or a small text transformer
(`models/text_transformer.py`), and `t` the log-temperature. It is the
two-tower model of `models/two_towers.py` without SigLIP's bias.
`apply({'params': p}, images=x, tokens=t)` returns `(zimg, ztxt, out)`: unit-norm embeddings (`None` for a missing input) and
`out['t'] = exp(t)`, the factor on the logits `zimg @ ztxt.T`.
"""
from vit_jax.models import bert
from vit_jax.models import two_towers
# pylint: disable=g-importing-member,unused-import
from vit_jax.models.bert import BertModel
from vit_jax.models.text_transformer import TextTransformer
from vit_jax.models.two_towers import TEXT_MODELS

# LiT is the two-tower model without the bias (`bias_init=None`, its default)
# and with the image tower locked (`train_image=False`, its default).
LitModel = two_towers.TwoTowerModel


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
  pp = config['pp']
  # SigLIP's SentencePiece options; LiT's presets leave them out.
  options = {k: pp[k] for k in ('lower', 'pad_value') if k in pp}
  tokenizer = tokenizers.get_tokenizer(pp['tokenizer_name'])(
      vocab_path=vocab_path, max_len=pp['max_len'], **options)
  model_size = text_vocab_size(config)
  if tokenizer.vocab_size > model_size:
    raise ValueError(
        f'The {config["pp"]["tokenizer_name"]} vocabulary {vocab_path} has '
        f'{tokenizer.vocab_size} tokens, but the text tower of '
        f'{config.get("model_name") or "this model"} embeds {model_size}: '
        'this tokenizer belongs to another model. Use the vocabulary '
        'published with the checkpoint.')
  return tokenizer
