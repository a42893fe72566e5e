"""Tests for vit_jax.predict: the CLI on the shared reference checkpoint."""
import json
from pathlib import Path
import subprocess

import jax
import numpy as np
from PIL import Image
import pytest
import skimage.data

from vit_jax import checkpoint
from vit_jax import inference
from vit_jax import models
from vit_jax.data import input_pipeline
from vit_jax.data import sources
from vit_jax.workdir import run
from tests.conftest import python_command

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parents[2] / 'shared' / 'reference'
CHECKPOINT = str(REFERENCE / 'vit_s16_2blocks.npz')
CONFIG = f'{REFERENCE / "cases.json"}:vit_s16_2blocks'

# conftest's `reference` fixture skips these tests where shared/ is absent.
pytestmark = pytest.mark.usefixtures('reference')


def _run(*args, model_flag=f'--config_json={CONFIG}'):
  return subprocess.run(
      python_command('-m', 'vit_jax.predict', model_flag,
       f'--checkpoint={CHECKPOINT}', *args),
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """An RGB and a greyscale photo as PNG files."""
  d = tmp_path_factory.mktemp('photos')
  Image.fromarray(skimage.data.astronaut()).save(d / 'astronaut.png')
  Image.fromarray(skimage.data.camera()).save(d / 'camera.png')
  return [str(d / 'astronaut.png'), str(d / 'camera.png')]


@pytest.fixture(scope='module')
def reference_model():
  return inference.load_model(CHECKPOINT, config_json=CONFIG)


def _assert_ranked(probs):
  assert all(0.0 <= p <= 1.0 for p in probs)
  assert probs == sorted(probs, reverse=True)
  assert sum(probs) <= 1.0 + 1e-6


def test_cli_text(photos):
  result = _run('--top_k=3', *photos)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert [lines[0], lines[4]] == photos
  for block in (lines[1:4], lines[5:8]):
    probs = [float(line.split()[0]) for line in block]
    _assert_ranked(probs)
    assert all(0 <= int(line.split()[1]) < 10 for line in block)


def test_cli_json_with_labels_file(photos, tmp_path):
  names = [f'class {i}' for i in range(10)]
  (tmp_path / 'labels.txt').write_text('\n'.join(names) + '\n')
  result = _run('--json', '--top_k=5', f'--labels={tmp_path / "labels.txt"}',
                *photos)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert [r['image'] for r in out] == photos
  for r in out:
    assert len(r['predictions']) == 5
    assert all(p['label'] == names[p['index']] for p in r['predictions'])
    _assert_ranked([p['probability'] for p in r['predictions']])


def test_cli_errors_are_one_message():
  """The CLI's error path end to end (test_load_model_errors and
  test_corrupt_or_missing_checkpoint check the messages in-process)."""
  result = _run('/no/such/image.png')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      "error: Image file '/no/such/image.png' does not exist.")
  assert 'Traceback' not in result.stderr + result.stdout


def test_probabilities_match_reference_logits(reference_model):
  images = np.load(REFERENCE / 'vit_s16_2blocks_input.npy')
  expected = np.asarray(jax.nn.softmax(
      np.load(REFERENCE / 'vit_s16_2blocks_logits.npy')))
  probs, indices = inference.predict(reference_model.model,
                                     reference_model.params, images, top_k=4)
  assert probs.shape == indices.shape == (2, 4)
  np.testing.assert_array_equal(indices, np.argsort(-expected)[:, :4])
  np.testing.assert_allclose(probs, np.sort(expected)[:, ::-1][:, :4],
                             atol=1e-5)


def test_loads_reference_at_trained_size(reference_model):
  assert reference_model.image_size == 224
  assert reference_model.model.num_classes == 10


def test_other_image_size_resizes_position_embeddings(photos):
  loaded = inference.load_model(CHECKPOINT, config_json=CONFIG, image_size=160)
  posemb = loaded.params['Transformer']['posembed_input']['pos_embedding']
  assert posemb.shape == (1, 1 + 10 * 10, 384)
  probs, _ = inference.predict(loaded.model, loaded.params,
                               inference.load_image(photos[0], 160)[None], 10)
  np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(model_name='ViT-Nope'), ValueError, "Unknown model 'ViT-Nope'"),
    (dict(model_name='ViT-S_16'),  # 12 blocks, the checkpoint has 2.
     checkpoint.CheckpointMismatchError, 'missing from the checkpoint: '
     'Transformer/encoderblock_2/... (16 arrays)'),
    (dict(model_name='ViT-B_16'), checkpoint.CheckpointMismatchError,
     'shape mismatch: Transformer/encoder_norm/bias checkpoint (384,) vs '
     'model (768,)'),
    (dict(config_json=f'{REFERENCE / "cases.json"}:nope'), ValueError,
     "has no entry 'nope'"),
])
def test_load_model_errors(kwargs, error, message):
  with pytest.raises(error) as e:
    inference.load_model(CHECKPOINT, **kwargs)
  assert message in str(e.value)


def test_corrupt_or_missing_checkpoint(tmp_path):
  corrupt = tmp_path / 'corrupt.npz'
  corrupt.write_bytes(Path(CHECKPOINT).read_bytes()[:1000])
  with pytest.raises(ValueError, match='not a readable .npz'):
    inference.load_model(str(corrupt), config_json=CONFIG)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    inference.load_model(str(tmp_path / 'none.npz'), config_json=CONFIG)


def test_load_image_converts_modes(tmp_path):
  rgba = np.zeros((40, 60, 4), np.uint8)
  rgba[:, :30] = (255, 0, 0, 255)  # Opaque red left, transparent right.
  images = {
      'grey.png': Image.fromarray(skimage.data.camera()),
      'rgba.png': Image.fromarray(rgba),
      'palette.png': Image.fromarray(skimage.data.astronaut()).convert('P'),
      'large.jpg': Image.new('RGB', (3000, 2000), (0, 128, 255)),
  }
  for name, img in images.items():
    img.save(tmp_path / name)
    x = inference.load_image(str(tmp_path / name), 32)
    assert x.shape == (32, 32, 3) and x.dtype == np.float32, name
    assert -1.0 <= x.min() and x.max() <= 1.0, name
  x = inference.load_image(str(tmp_path / 'rgba.png'), 32)
  np.testing.assert_allclose(x[:, 0], [[1, -1, -1]] * 32)
  np.testing.assert_allclose(x[:, -1], 1.0)  # Transparent -> white.
  x = inference.load_image(str(tmp_path / 'large.jpg'), 32)
  np.testing.assert_allclose(x.mean(axis=(0, 1)), [-1, 0, 1], atol=0.02)


def test_unreadable_image(tmp_path):
  (tmp_path / 'text.png').write_text('not an image')
  with pytest.raises(ValueError, match='Cannot read image'):
    inference.load_image(str(tmp_path / 'text.png'), 32)


def test_labels():
  names = inference.read_labels('imagenet2012', 1000)
  assert len(names) == 1000
  assert names[0].startswith('tench') and names[340] == 'zebra'
  assert inference.read_labels(None, 10) is None
  with pytest.raises(ValueError, match='has 1000 names but the checkpoint '
                     'has 10 classes'):
    inference.read_labels('imagenet2012', 10)


def test_checkpoint_decides_head_pre_logits_and_size(tmp_path):
  config = dict(patches={'size': [8, 8]}, hidden_size=16, classifier='gap',
                transformer=dict(num_layers=1, num_heads=2, mlp_dim=32))
  model = models.VisionTransformer(num_classes=3, representation_size=12,
                                   **config)
  params = model.init(jax.random.key(0), np.zeros((1, 48, 48, 3)),
                      train=False)['params']
  checkpoint.save_npz(str(tmp_path / 'params.npz'), params)
  (tmp_path / 'model.json').write_text(json.dumps(config))

  loaded = inference.load_model(str(tmp_path / 'params.npz'),
                                config_json=str(tmp_path / 'model.json'))
  assert loaded.image_size == 48  # 6x6 patches of 8 px, no class token.
  assert loaded.model.num_classes == 3
  assert loaded.config.representation_size == 12


def test_cli_from_workdir_names_the_classes(trained_run, image_folder):
  """The run's model, params and class names, from --workdir alone."""
  images = [str(image_folder / 'test' / 'class1' / '1.png'),
            str(image_folder / 'test' / 'class2' / '2.png')]
  result = subprocess.run(
      python_command('-m', 'vit_jax.predict', f'--workdir={trained_run}',
       '--top_k=3', *images), cwd=REPO, capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert [lines[0], lines[4]] == images
  for block in (lines[1:4], lines[5:8]):
    _assert_ranked([float(line.split()[0]) for line in block])
    assert sorted(line.split()[1] for line in block) == [
        'class0', 'class1', 'class2']


def test_workdir_images_are_the_eval_input(trained_run):
  """An image file becomes exactly what the run's eval pipeline feeds."""
  config = run.load_config(str(trained_run))
  paths = sources.get_source(config, 'test').fetch(np.arange(4))['path']
  batch = next(input_pipeline.eval_iterator(config))
  for path, image in zip(paths, batch['image']):
    np.testing.assert_array_equal(inference.load_image_as_run(path, config),
                                  image)
