"""Old import path: `from vit_jax import preprocess` keeps working.

New code imports `vit_jax.models.tokenizers`; this module re-exports its
public names, and the original release's LiT image preprocessing
(`vit_jax/original/preprocess.py`).
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.models.tokenizers import (
    BertTokenizer,
    SentencepieceTokenizer,
    TOKENIZERS,
    get_tokenizer)
from vit_jax.original.preprocess import (
    PreprocessImages,
    get_pp)
