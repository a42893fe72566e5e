"""Tests for vit_jax.visualize: the numbers behind each figure, and the CLI."""
import json
from pathlib import Path
import subprocess

import jax
import numpy as np
from PIL import Image
import pytest
import skimage.data

from vit_jax import checkpoint
from vit_jax import models
from vit_jax import visualize
from tests.conftest import needs_fashion_mnist, python_command

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / 'notebooks' / 'models' / 'fashion_mnist_vit'


def _random_attention(rng, batch, heads, tokens):
  return np.asarray(jax.nn.softmax(rng.normal(size=(batch, heads, tokens,
                                                    tokens)) * 3))


def test_posemb_similarity():
  rng = np.random.default_rng(0)
  same = np.tile(rng.normal(size=(1, 1, 8)), (1, 1 + 6, 1))
  np.testing.assert_allclose(visualize.posemb_similarity(same, (2, 3), 1), 1.0)

  sim = visualize.posemb_similarity(rng.normal(size=(1, 6, 16)), (2, 3), 0)
  assert sim.shape == (2, 3, 2, 3)
  flat = sim.reshape(6, 6)
  np.testing.assert_allclose(np.diag(flat), 1.0)
  np.testing.assert_allclose(flat, flat.T)
  assert np.abs(flat).max() <= 1.0 + 1e-12


def test_posemb_similarity_skips_the_class_token():
  posemb = np.array([[[5.0, 5.0], [1, 0], [0, 1], [-1, 0], [1, 1]]])
  sim = visualize.posemb_similarity(posemb, (2, 2), 1)
  np.testing.assert_allclose(sim[0, 0].ravel(), [1, 0, -1, np.sqrt(0.5)])


def test_attention_rollout_is_a_distribution_over_patches():
  rng = np.random.default_rng(0)
  for prefix in (1, 0):  # Class token; global average pooling.
    weights = [_random_attention(rng, 2, 3, prefix + 6) for _ in range(4)]
    rollout = visualize.attention_rollout(weights, (2, 3), prefix)
    assert rollout.shape == (2, 2, 3)
    assert rollout.min() >= 0
    np.testing.assert_allclose(rollout.sum(axis=(1, 2)), 1.0)


def test_attention_rollout_known_cases():
  # Uniform attention leaves every patch the same share.
  uniform = [np.full((1, 2, 5, 5), 0.2)] * 3
  np.testing.assert_allclose(
      visualize.attention_rollout(uniform, (2, 2), 1), 0.25)
  # One layer where the class token attends only to token 3, the third patch:
  # A + I renormalised gives it 1/2 on itself and 1/2 on that patch.
  a = np.full((1, 1, 5, 5), 0.2)
  a[0, 0, 0] = [0.0, 0.0, 0.0, 1.0, 0.0]
  np.testing.assert_allclose(visualize.attention_rollout([a], (2, 2), 1),
                             [[[0, 0], [1, 0]]])


def test_mean_attention_distance():
  eye = np.broadcast_to(np.eye(1 + 6), (2, 4, 7, 7))
  distance = visualize.mean_attention_distance([eye] * 3, (2, 3), 16, 1)
  assert distance.shape == (3, 4)
  np.testing.assert_allclose(distance, 0.0)

  # Two patches side by side, uniform attention: half the weight at 0 px,
  # half at 16 px; the class token's share is dropped and renormalised.
  uniform = np.full((1, 2, 3, 3), 1 / 3)
  np.testing.assert_allclose(
      visualize.mean_attention_distance([uniform], (1, 2), 16, 1), [[8, 8]])
  # Non-square patches: 3 rows of 10 px, each query attending to the others.
  a = (1 - np.eye(3)) / 2
  np.testing.assert_allclose(
      visualize.mean_attention_distance([a[None, None]], (3, 1), (10, 4), 0),
      [[(10 + 20 + 10 + 10 + 20 + 10) / 6]])


def test_patch_embedding_pcs():
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(4, 4, 3, 32))
  pcs = visualize.patch_embedding_pcs(kernel, 5)
  assert pcs.shape == (5, 4, 4, 3)
  flat = pcs.reshape(5, -1)
  np.testing.assert_allclose(flat @ flat.T, np.eye(5), atol=1e-10)

  # Filters spread along one direction: that is the first component.
  direction = rng.normal(size=48)
  direction /= np.linalg.norm(direction)
  filters = (rng.normal(size=(64, 1)) * 10 * direction +
             rng.normal(size=(64, 48)) * 0.1)
  pcs = visualize.patch_embedding_pcs(filters.T.reshape(4, 4, 3, 64), 1)
  assert abs(pcs.ravel() @ direction) > 0.99


def test_cli_writes_pngs(tmp_path):
  config = dict(patches={'size': [8, 8]}, hidden_size=32, classifier='token',
                transformer=dict(num_layers=2, num_heads=2, mlp_dim=64,
                                 dropout_rate=0.0, attention_dropout_rate=0.0))
  (tmp_path / 'model.json').write_text(json.dumps(config))
  model = models.VisionTransformer(num_classes=10, **config)
  params = jax.jit(lambda: model.init(  # One compile, not one per op.
      jax.random.key(0), np.zeros((1, 32, 32, 3)), train=False)['params'])()
  checkpoint.save_npz(str(tmp_path / 'params.npz'), params)
  Image.fromarray(skimage.data.astronaut()).save(tmp_path / 'image.png')

  out_dir = tmp_path / 'out'
  result = subprocess.run(
      python_command('-m', 'vit_jax.visualize',
       f'--config_json={tmp_path / "model.json"}',
       f'--checkpoint={tmp_path / "params.npz"}',
       f'--image={tmp_path / "image.png"}', f'--out_dir={out_dir}',
       '--num_pcs=6'),
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  names = ['posemb_similarity.png', 'embedding_pcs.png',
           'attention_rollout_0.png', 'mean_attention_distance.png']
  assert result.stdout.split() == [str(out_dir / n) for n in names]
  for name in names:
    with Image.open(out_dir / name) as png:
      assert png.format == 'PNG'
      assert min(png.size) > 100


def test_training_curves_from_metrics_records():
  records = [{'step': 10, 'train/loss': 2.0, 'train/lr': 0.1},
             {'step': 20, 'train/loss': 1.5},
             {'step': 20, 'eval/accuracy': 0.5, 'eval/loss': 1.4},
             {'step': 20, 'train/loss': 1.25},  # Resumed: the step again.
             {'step': 30, 'train/loss': 1.0, 'eval/accuracy': 0.75,
              'eval_ema/accuracy': 0.8}]
  curves = visualize.training_curves(records)
  assert sorted(curves) == ['eval/accuracy', 'eval_ema/accuracy',
                            'train/loss']
  np.testing.assert_array_equal(curves['train/loss'][0], [10, 20, 30])
  np.testing.assert_array_equal(curves['train/loss'][1], [2.0, 1.25, 1.0])
  np.testing.assert_array_equal(curves['eval/accuracy'][0], [20, 30])
  np.testing.assert_array_equal(curves['eval_ema/accuracy'][1], [0.8])
  with pytest.raises(ValueError, match='no train/loss'):
    visualize.training_curves([{'step': 1, 'eval/accuracy': 0.5}])


def test_first_of_each_class():
  np.testing.assert_array_equal(
      visualize.first_of_each_class(np.array([9, 2, 1, 1, 6, 2, 9, 4]), 3),
      [0, 1, 2])
  np.testing.assert_array_equal(
      visualize.first_of_each_class(np.array([3, 3, 5]), 4), [0, 2])


@needs_fashion_mnist
def test_readme_figures_from_the_shipped_model(tmp_path):
  """The README's command (fewer images): every figure from the shipped
  model, its rollouts of test images, and a run's curves."""
  metrics = tmp_path / 'run' / 'metrics.jsonl'
  metrics.parent.mkdir()
  metrics.write_text(''.join(
      json.dumps(r) + '\n' for r in
      [{'step': 100, 'train/loss': 1.2}, {'step': 200, 'train/loss': 0.9},
       {'step': 200, 'eval/accuracy': 0.85, 'eval/loss': 0.4}]))
  out_dir = tmp_path / 'figures'
  result = subprocess.run(
      python_command('-m', 'vit_jax.visualize',
       f'--workdir={SHIPPED}', f'--metrics={metrics}', f'--out_dir={out_dir}',
       '--num_images=8', '--num_rollouts=2'),
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  names = ['posemb_similarity.png', 'embedding_pcs.png',
           'attention_rollout_0.png', 'attention_rollout_1.png',
           'mean_attention_distance.png', 'training_curves.png']
  assert result.stdout.split() == [str(out_dir / n) for n in names]
  for name in names:
    assert (out_dir / name).stat().st_size > 5000, name
    with Image.open(out_dir / name) as png:
      assert png.format == 'PNG'
      assert min(png.size) > 100


def test_bad_metrics_file_is_one_error_line(tmp_path):
  metrics = tmp_path / 'metrics.jsonl'
  metrics.write_text('{"step": 1, "eval/accuracy": 0.5}\n')
  result = subprocess.run(
      python_command('-m', 'vit_jax.visualize', f'--workdir={SHIPPED}',
       f'--metrics={metrics}', f'--out_dir={tmp_path / "out"}'),
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      'error: The metrics hold no train/loss: are they the metrics.jsonl of '
      'a `python main.py` run?')
  assert not (tmp_path / 'out').exists()
