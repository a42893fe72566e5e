"""The original release's `vit_jax.utils`, re-exported from
`vit_jax.original.train` (README.md: "The original release's API").
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.original.train import (
    create_learning_rate_schedule)
