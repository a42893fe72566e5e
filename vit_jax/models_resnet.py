"""The original release's `vit_jax.models_resnet`, re-exported from
`vit_jax.models.resnet` (README.md: "The original release's API").
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.models.resnet import (
    ResNetStage,
    ResidualUnit,
    StdConv,
    weight_standardize)
