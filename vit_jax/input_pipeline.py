"""The original release's `vit_jax.input_pipeline`, re-exported from
`vit_jax.original.data` (README.md: "The original release's API").
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.original.data import (
    get_data_from_directory,
    get_data_from_tfds,
    get_dataset_info,
    get_datasets,
    get_directory_info,
    get_tfds_info,
    prefetch)
