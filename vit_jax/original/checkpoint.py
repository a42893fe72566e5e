"""The original's `checkpoint` functions that this package's
`vit_jax.checkpoint` does not have under the same name."""
import flax
import tensorflow as tf

from vit_jax.checkpoint import augreg
from vit_jax.checkpoint import pretrained


def inspect_params(*, params, expected, fail_if_extra: bool = True,
                   fail_if_missing: bool = True):
  """`params`, checked to have the keys of `expected`: a key missing from
  `params` (with `fail_if_missing`) or not in `expected` (with
  `fail_if_extra`) raises `checkpoint.fit_params`'s listing of them."""
  got = set(flax.traverse_util.flatten_dict(dict(params)))
  want = set(flax.traverse_util.flatten_dict(dict(expected)))
  if (fail_if_missing and want - got) or (fail_if_extra and got - want):
    pretrained.fit_params(params, expected, 'params')  # Raises.
  return params


def copy(src: str, dst: str) -> None:
  """Copies a (local or gs://) file with tf.io.gfile."""
  tf.io.gfile.copy(src, dst, overwrite=True)


def get_augreg_df(directory: str = augreg.DEFAULT_DIR):
  """The AugReg checkpoints' index.csv as a pandas DataFrame."""
  return augreg.read_index(directory)
