"""Old import path: `from vit_jax import models_lit` keeps working.

New code imports `vit_jax.models.lit`; this module re-exports its
public names, and the original release's `LitModel` (that model with its
`load_variables`, `get_tokenizer`, `get_pp`, ... : `vit_jax/original/lit.py`).
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.models.lit import (
    BertModel,
    TEXT_MODELS,
    TextTransformer,
    get_tokenizer,
    text_vocab_size)
from vit_jax.original.lit import (
    BASE_PATH,
    LitModel)
