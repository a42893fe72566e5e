"""The features CLI (vit_jax.features) on the public timm case features_tiny."""
from pathlib import Path
import subprocess

import numpy as np
from PIL import Image
import pytest

from vit_jax import features
from vit_jax import inference
from vit_jax import models
from tests.conftest import python_command

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parents[2] / 'shared' / 'reference'
CHECKPOINT = str(REFERENCE / 'features_tiny' / 'model.safetensors')

pytestmark = pytest.mark.usefixtures('reference')


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  d = tmp_path_factory.mktemp('images')
  rng = np.random.RandomState(0)
  for name in ('b.png', 'a.jpg', 'sub/c.png'):
    (d / name).parent.mkdir(exist_ok=True)
    Image.fromarray(rng.randint(0, 255, (20, 24, 3), np.uint8)).save(d / name)
  (d / 'notes.txt').write_text('not an image')
  return d


def _run(*args):
  return subprocess.run(python_command('-m', 'vit_jax.features',
                         f'--checkpoint={CHECKPOINT}', *args), cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        check=False)


def test_cli_writes_per_block_maps(folder, tmp_path):
  out = tmp_path / 'f.npz'
  result = _run(f'--data={folder}', f'--out={out}', '--blocks=0,-1',
                '--norm', '--batch_size=2')
  assert result.returncode == 0, result.stderr
  assert '3/3 images' in result.stderr
  with np.load(out) as f:
    assert sorted(f) == ['block_0', 'block_1', 'paths']
    paths = list(f['paths'])
    assert paths == sorted(str(p) for p in folder.rglob('*.*')
                           if p.suffix != '.txt')
    # The model's own maps of those images (16 px: the trained size).
    loaded = inference.load_model(CHECKPOINT)
    x = np.stack([inference.load_image(p, 16) for p in paths])
    want = models.create(loaded.config, 0).apply(
        {'params': loaded.params}, x, train=False,
        method='forward_intermediates', indices=[0, 1], norm=True)
    assert f['block_0'].shape == (3, 4, 4, 32)
    np.testing.assert_allclose(f['block_0'], want[0], atol=1e-5)
    np.testing.assert_allclose(f['block_1'], want[1], atol=1e-5)


def test_pooled_features_are_what_the_head_reads(folder):
  loaded = inference.load_model(CHECKPOINT)
  paths = sorted(str(p) for p in folder.rglob('*.png'))

  def fetch(size, i, j):
    return np.stack([inference.load_image(p, size) for p in paths[i:j]])

  lines = []
  out = features.extract(loaded, fetch, len(paths), batch_size=4,
                         log=lines.append)
  assert lines == ['2/2 images']
  pooled = out['features']
  assert pooled.shape == (2, 32)
  head = loaded.params['head']
  logits = loaded.model.apply({'params': loaded.params}, fetch(16, 0, 2),
                              train=False)
  np.testing.assert_allclose(pooled @ head['kernel'] + head['bias'], logits,
                             atol=1e-5)


@pytest.mark.parametrize('args, message', [
    (['--data=/no/such/dir'], 'neither a folder nor DATASET:SPLIT'),
    (['--data=.', '--blocks=x'], '--blocks='),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
  result = _run(*args, f'--out={tmp_path / "f.npz"}')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith('error: ')
  assert message in result.stderr
  assert not (tmp_path / 'f.npz').exists()


def test_blocks_out_of_range():
  with pytest.raises(ValueError, match='out of range'):
    features.extract(inference.load_model(CHECKPOINT), None, 1, blocks=[5])
