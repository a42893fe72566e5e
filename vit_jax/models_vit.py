"""The original release's `vit_jax.models_vit`, re-exported from
`vit_jax.models.vit` (README.md: "The original release's API").
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.models.vit import (
    AddPositionEmbs,
    Encoder,
    Encoder1DBlock,
    MlpBlock,
    VisionTransformer)
