"""vit_jax.workdir.run: a run read back from its workdir."""
import shutil

import jax
import numpy as np
import pytest

from tests.conftest import data_config, needs_fashion_mnist
from vit_jax.data import sources
from vit_jax.workdir import run as run_dir


def _equal_trees(a, b):
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                           jax.tree.leaves(b)))


@needs_fashion_mnist
def test_fashion_mnist_class_names_without_download():
  names = sources.class_names(data_config())
  assert len(names) == 10
  assert (names[0], names[9]) == ('T-shirt/top', 'Ankle boot')


def test_image_folder_class_names(image_folder):
  config = data_config(dataset='imagefolder', data_dir=str(image_folder))
  assert sources.class_names(config) == ['class0', 'class1', 'class2']


def test_params_npz_is_the_last_checkpoint(trained_run):
  final = run_dir.load(str(trained_run))
  assert final.source == str(trained_run / 'params.npz')
  assert final.class_names == ['class0', 'class1', 'class2']
  assert final.params['head']['kernel'].shape == (16, 3)
  last = run_dir.load(str(trained_run), step=6)
  assert last.source == str(trained_run / 'checkpoints' / '6')
  assert _equal_trees(final.params, last.params)
  assert not _equal_trees(final.params,
                          run_dir.load(str(trained_run), step=3).params)


def test_unfinished_run_uses_newest_checkpoint(trained_run, tmp_path,
                                               capsys):
  shutil.copytree(trained_run, tmp_path / 'run')
  (tmp_path / 'run' / 'params.npz').unlink()
  run = run_dir.load(str(tmp_path / 'run'))
  assert run.source == str(tmp_path / 'run' / 'checkpoints' / '6')
  assert 'the run has not finished' in capsys.readouterr().err


@pytest.mark.parametrize('step, error, message', [
    (5, ValueError, r'has no checkpoint of step 5 \(it has \[3, 6\]\)'),
    (None, FileNotFoundError, 'is .* the --workdir of a `python main.py`'),
])
def test_errors(trained_run, tmp_path, step, error, message):
  workdir = trained_run if step else tmp_path
  with pytest.raises(error, match=message):
    run_dir.load(str(workdir), step)
