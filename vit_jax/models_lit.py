"""Old import path: `from vit_jax import models_lit` keeps working.

New code imports `vit_jax.models.lit`; this module re-exports its
public names.
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.models.lit import (
    BertModel,
    LitModel,
    TEXT_MODELS,
    TextTransformer,
    get_tokenizer,
    text_vocab_size)
