"""Training-state checkpoints: fallback past a damaged one, clear refusals."""
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from vit_jax.workdir import checkpoints

STATE = {'a': jnp.arange(20.0).reshape(4, 5), 'b': {'c': jnp.zeros(3)}}


def _truncate(directory):
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


def _run(tmp_path, damage):
  """Checkpoints 10 and 20 (20 holds STATE + 1), `damage`d, then restored."""
  manager = checkpoints.Manager(str(tmp_path), ml_collections.ConfigDict())
  manager.save(10, STATE)
  manager.save(20, jax.tree.map(lambda x: x + 1, STATE))
  manager.close()
  damage(tmp_path / 'checkpoints')
  manager = checkpoints.Manager(str(tmp_path), ml_collections.ConfigDict())
  try:
    return manager.restore_latest(STATE)
  finally:
    manager.close()


def test_truncated_newest_falls_back_to_the_older_one(tmp_path):
  restored = _run(tmp_path, lambda d: _truncate(d / '20'))
  jax.tree.map(lambda got, want: (got == want).all() or pytest.fail(),
               restored, STATE)


def test_truncated_only_checkpoint_is_refused_with_what_to_do(tmp_path):
  def damage(directory):
    shutil.rmtree(directory / '10')
    _truncate(directory / '20')
  with pytest.raises(ValueError) as e:
    _run(tmp_path, damage)
  message = str(e.value)
  assert 'Checkpoint(s) [20]' in message and 'truncated or corrupt' in message
  assert f'move {tmp_path}/checkpoints/20 aside' in message
  assert 'different model' not in message


def test_checkpoints_of_another_model_are_refused(tmp_path):
  manager = checkpoints.Manager(str(tmp_path), ml_collections.ConfigDict())
  manager.save(10, STATE)
  manager.close()
  manager = checkpoints.Manager(str(tmp_path), ml_collections.ConfigDict())
  with pytest.raises(ValueError, match=r'None of the checkpoints \[10\].*'
                     'different model'):
    manager.restore_latest({'a': jnp.zeros((2, 5)), 'b': {'c': jnp.zeros(3)}})
  manager.close()
