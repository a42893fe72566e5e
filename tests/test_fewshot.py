"""Tests for vit_jax.evaluators.fewshot on scikit-learn's bundled digits (no download)."""
import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from vit_jax import models
from vit_jax.evaluators import fewshot


@pytest.fixture(scope='module')
def digits():
  """Digits as 32x32 RGB in [-1, 1]: 1000 to draw shots from, 797 to test."""
  data = load_digits()
  images = np.kron(data.images / 8.0 - 1.0, np.ones((4, 4)))
  images = np.repeat(images[..., None], 3, axis=-1).astype(np.float32)
  return images[:1000], data.target[:1000], images[1000:], data.target[1000:]


def _pixels(unused_params, images):
  return images.reshape(len(images), -1)


def test_raw_pixels_beat_chance(digits):
  train_x, train_y, test_x, test_y = digits
  acc = {k: fewshot.fewshot_accuracy(_pixels(None, train_x), train_y,
                                     _pixels(None, test_x), test_y, k, seed=0)
         for k in (1, 10, 25)}
  assert acc[10] >= 0.7  # Chance is 0.1; measured 0.83.
  assert acc[25] >= acc[1]


def test_evaluator_on_random_vit(digits):
  model = models.VisionTransformer(
      num_classes=10, patches={'size': (8, 8)}, hidden_size=32,
      transformer=dict(num_layers=2, num_heads=2, mlp_dim=64))
  # One compile for the whole init instead of one per eager primitive.
  params = jax.jit(lambda rng: model.init(rng, digits[0][:1], train=False)[
      'params'])(jax.random.key(0))
  evaluator = fewshot.FewShotEvaluator(*digits, shots=(1, 25), batch_size=512)
  acc = evaluator.run(fewshot.pre_logits_fn(model), params)
  assert set(acc) == {'fewshot/1shot', 'fewshot/25shot'}
  # Random features still carry the digit; measured 0.23 and 0.34.
  assert acc['fewshot/25shot'] >= 0.25
  assert acc['fewshot/25shot'] >= acc['fewshot/1shot']


def test_evaluator_keeps_only_what_shots_need(digits):
  evaluator = fewshot.FewShotEvaluator(*digits, shots=(1, 5), seed=3)
  assert evaluator.train_images.shape == (50, 32, 32, 3)
  np.testing.assert_array_equal(np.bincount(evaluator.train_labels), [5] * 10)
  acc = evaluator.run(_pixels, None)
  assert acc['fewshot/5shot'] >= 0.5


def test_sample_shots():
  labels = np.array([0] * 5 + [1] * 2 + [2] * 9)
  idx = fewshot.sample_shots(labels, 3, seed=1)
  np.testing.assert_array_equal(np.bincount(labels[idx]), [3, 2, 3])
  assert len(set(idx)) == len(idx)
  assert set(fewshot.sample_shots(labels, 1, seed=1)) <= set(idx)


def test_extract_features_pads_the_last_batch():
  shapes = []

  def model_fn(params, batch):
    shapes.append(batch.shape)
    return batch.sum(axis=(1, 2)) * params

  images = np.arange(20 * 2 * 2, dtype=np.float32).reshape(20, 2, 2, 1)
  feats = fewshot.extract_features(model_fn, 2.0, images, batch_size=8)
  assert shapes == [(8, 2, 2, 1)] * 3
  np.testing.assert_allclose(feats, images.sum(axis=(1, 2)) * 2)


@pytest.mark.parametrize('n, d', [(30, 5), (5, 30)])
def test_fit_is_ridge_regression(n, d):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(n, d)), rng.normal(size=(n, 3))
  w = fewshot._fit(x, y, 0.5)  # pylint: disable=protected-access
  # The gradient of |xw - y|^2 + 0.5 |w|^2 vanishes at the solution.
  np.testing.assert_allclose(x.T @ (x @ w - y) + 0.5 * w, 0.0, atol=1e-10)
