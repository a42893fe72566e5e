"""Old import path: `from vit_jax import augreg` keeps working.

New code imports `vit_jax.checkpoint.augreg`; this module re-exports its
public names.
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.checkpoint.augreg import (
    DEFAULT_DIR,
    INDEX_COLUMNS,
    TIMM_NAMES,
    best_filename,
    checkpoint_path,
    hub_name,
    model_config,
    model_of,
    read_index,
    resolve,
    rows_of)
