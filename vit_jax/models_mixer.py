"""The original release's `vit_jax.models_mixer`, re-exported from
`vit_jax.models.mixer` (README.md: "The original release's API").
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.models.mixer import (
    MixerBlock,
    MlpBlock,
    MlpMixer)
