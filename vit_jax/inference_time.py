"""The original release's `vit_jax.inference_time`, re-exported from
`vit_jax.original.train` (README.md: "The original release's API").
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.original.train import (
    inference_time)
