"""Old import path: `from vit_jax import fewshot` keeps working.

New code imports `vit_jax.evaluators.fewshot`; this module re-exports its
public names.
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.evaluators.fewshot import (
    BIAS_FEATURE,
    DEFAULT_L2_REG,
    FewShotEvaluator,
    extract_features,
    fewshot_accuracy,
    pre_logits_fn,
    sample_shots)
