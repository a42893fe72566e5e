"""FlexiViT training (models/flexi.py): a patch size per step, drawn inside
the compiled step from the step's key."""
import subprocess

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.conftest import ROOT, assert_same_params, main_env, tiny_config, \
    python_command
from vit_jax import models
from vit_jax.models import flexi


def test_draw_is_a_function_of_the_key_and_covers_the_sizes():
  config = tiny_config(patches={'size': (4, 4)})
  model = models.create(config, 3)
  x = jnp.asarray(np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3)),
                  jnp.float32)
  params = jax.jit(lambda: model.init(  # One compile, not one per op.
      jax.random.PRNGKey(0), x, train=False))()
  params = jax.tree.map(  # A non-zero head, every weight its own.
      lambda p: p + 0.3 * np.random.RandomState(p.size).standard_normal(
          p.shape).astype(np.float32), params)
  sizes = (2, 4, (4, 8))
  at = {s: jax.jit(lambda p, s=s: model.apply(p, x, train=False,
                                              patch_size=s))(params)
        for s in sizes}
  apply = jax.jit(lambda rng: flexi.apply_at_random_patch_size(
      model, params, x, patch_sizes=sizes, rng=rng, train=False))
  seen = set()
  for step in range(12):
    rng = jax.random.fold_in(jax.random.PRNGKey(1), step)
    out = apply(rng)
    np.testing.assert_array_equal(out, apply(rng))  # Same key, same size.
    match = [s for s in sizes if np.allclose(out, at[s], atol=1e-6)]
    assert len(match) == 1
    seen.add(match[0])
  assert seen == set(sizes)


@pytest.mark.parametrize('sizes, message', [
    ((3,), 'do not'), (((4, 5),), 'do not'), (('a',), 'patch sizes')])
def test_check(sizes, message):
  config = ml_collections.ConfigDict(dict(
      model=tiny_config(patches={'size': (4, 4)}), image_size=16,
      flexi_patch_sizes=sizes))
  with pytest.raises(ValueError, match=message):
    flexi.check(config)
  config.flexi_patch_sizes = (2, 4, (8, 4))
  flexi.check(config)


# Both runs in one 2-device process (one interpreter start and JAX/TF
# import, not two): the cut run is a second `train_and_evaluate` on the
# copied workdir, which restores from disk as a new process would.
_FULL_THEN_CUT = '''
import shutil, sys
from pathlib import Path
from tests.conftest import main_config
from vit_jax.train import tasks
image_folder, full, cut, *flags = sys.argv[1:]
config = main_config(image_folder, *flags)
tasks.train_and_evaluate(config, full)
shutil.copytree(full, cut)
shutil.rmtree(Path(cut) / 'checkpoints' / '4')
(Path(cut) / 'params.npz').unlink()
print('--- cut run ---', file=sys.stderr, flush=True)
tasks.train_and_evaluate(config, cut)
'''


def test_two_device_run_resumes_bit_identically(tmp_path, image_folder):
  """Random patch sizes (2 or 4 px at 16 px) on 2 devices: resumed from its
  step-2 checkpoint, the run ends with the uninterrupted run's params."""
  flags = ('--config.flexi_patch_sizes=(2, 4)', '--config.total_steps=4',
           '--config.eval_every=4', '--config.checkpoint_every=2')
  full, cut = tmp_path / 'full', tmp_path / 'cut'
  result = subprocess.run(
      python_command('-c', _FULL_THEN_CUT, str(image_folder), str(full),
       str(cut), *flags), env=main_env(2), cwd=ROOT, capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  full_log, cut_log = result.stderr.split('--- cut run ---')
  assert 'Starting at step 2' not in full_log
  assert 'Starting at step 2' in cut_log
  assert_same_params(full, cut)
