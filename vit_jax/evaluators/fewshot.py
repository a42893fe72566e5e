"""Few-shot linear evaluation on frozen features, as in the ViT paper.

A linear classifier is fit in closed form by regularised least squares to
targets in {-1, +1} (2 * one-hot - 1), from `shots` examples per class, and
scored on a test set. The recipe is big_vision's `fewshot_lsr`:
- features are standardised with the mean and std of the few-shot sample;
- a constant feature of 100 stands in for the bias: its weight is nearly free
  of the penalty, since scaling a feature up shrinks the weight it needs;
- the L2 strength is fixed, 2**10 by default as in big_vision's configs, not
  tuned per task: with 1 to 25 examples per class there is no data to spare
  for a validation split, and a fixed value keeps runs comparable.

Usage:
  evaluator = FewShotEvaluator(train_images, train_labels, test_images,
                               test_labels, shots=(1, 5, 10, 25))
  metrics = evaluator.run(pre_logits_fn(model), params)
  # {'fewshot/1shot': 0.41, 'fewshot/5shot': ..., ...}
Given `model=`, it is also an evaluator of the trainer's kind
(vit_jax/evaluators/__init__.py): `evaluator(params, mesh)`.
"""
from typing import Callable, Dict, Sequence

import jax
import numpy as np

from vit_jax import progress

BIAS_FEATURE = 100.0
DEFAULT_L2_REG = 2.0**10


def pre_logits_fn(model) -> Callable:
  """`predict_features(params, images)`: `model`'s output before the head.

  The model is rebuilt with `num_classes=0`, which skips the head, so the
  output is the class token (or pooled) representation after the final
  LayerNorm and the pre-logits layer, if any.
  """
  body = model.clone(num_classes=0)

  @jax.jit
  def predict_features(params, images):
    params = {k: v for k, v in params.items() if k != 'head'}
    return body.apply({'params': params}, images, train=False)

  return predict_features


def extract_features(model_fn: Callable, params, images: np.ndarray,
                     batch_size: int = 256) -> np.ndarray:
  """[N, D] features of `images`, computed `batch_size` at a time.

  The last batch is padded to full size so that a jitted `model_fn` compiles
  once. On a terminal, process 0 shows a bar over the batches.
  """
  out = []
  for start in progress.bar(range(0, len(images), batch_size),
                            desc='Few-shot features', unit='batch',
                            active=jax.process_index() == 0):
    batch = images[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]),
                                              batch.dtype)])
    out.append(np.asarray(model_fn(params, batch))[:batch_size - pad])
  return np.concatenate(out)


def sample_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
  """Indices of `shots` random examples of each class (all, where fewer).

  For one seed, the sample for fewer shots is a subset of that for more.
  """
  rng = np.random.default_rng(seed)
  return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:shots]
                         for c in np.unique(labels)])


def _fit(x: np.ndarray, y: np.ndarray, l2_reg: float) -> np.ndarray:
  """Weights w minimising |xw - y|^2 + l2_reg |w|^2.

  Solves the smaller of the two equivalent systems: (x'x + l2 I) w = x'y with
  D unknowns per class, or w = x'(xx' + l2 I)^-1 y with N; few-shot has N < D.
  """
  n, d = x.shape
  if n >= d:
    return np.linalg.solve(x.T @ x + l2_reg * np.eye(d), x.T @ y)
  return x.T @ np.linalg.solve(x @ x.T + l2_reg * np.eye(n), y)


def fewshot_accuracy(train_feats: np.ndarray, train_labels: np.ndarray,
                     test_feats: np.ndarray, test_labels: np.ndarray,
                     shots: int, seed: int = 0,
                     l2_reg: float = DEFAULT_L2_REG) -> float:
  """Test accuracy of a linear classifier fit on `shots` per class.

  Args:
    train_feats, train_labels: the pool [N, D], [N] to sample shots from.
    test_feats, test_labels: [M, D], [M].
    shots: examples per class.
    seed: picks the examples.
    l2_reg: L2 penalty strength.
  """
  idx = sample_shots(train_labels, shots, seed)
  x = np.asarray(train_feats[idx], np.float64)
  mean, std = x.mean(axis=0), x.std(axis=0) + 1e-5
  with_bias = lambda f: np.pad((np.asarray(f, np.float64) - mean) / std,
                               ((0, 0), (0, 1)), constant_values=BIAS_FEATURE)
  num_classes = int(max(train_labels.max(), test_labels.max())) + 1
  targets = 2.0 * np.eye(num_classes)[train_labels[idx]] - 1.0
  w = _fit(with_bias(x), targets, l2_reg)
  predictions = (with_bias(test_feats) @ w).argmax(axis=1)
  return float(np.mean(predictions == test_labels))


class FewShotEvaluator:
  """Few-shot accuracies of a model's features, for use during training.

  Only the images that some shot count can use are kept: `max(shots)` per
  class, sampled once from the training pool, so each run extracts features
  for those and the test set, not the whole pool.
  """

  def __init__(self, train_images: np.ndarray, train_labels: np.ndarray,
               test_images: np.ndarray, test_labels: np.ndarray, *,
               shots: Sequence[int] = (1, 5, 10, 25), seed: int = 0,
               l2_reg: float = DEFAULT_L2_REG, batch_size: int = 256,
               model=None):
    idx = sample_shots(np.asarray(train_labels), max(shots), seed)
    self.train_images = np.asarray(train_images)[idx]
    self.train_labels = np.asarray(train_labels)[idx]
    self.test_images = np.asarray(test_images)
    self.test_labels = np.asarray(test_labels)
    self.shots, self.seed = tuple(shots), seed
    self.l2_reg, self.batch_size = l2_reg, batch_size
    self._features = None if model is None else pre_logits_fn(model)

  def run(self, predict_features: Callable, params) -> Dict[str, float]:
    """{'fewshot/{k}shot': accuracy} for each k in `shots`."""
    features = lambda images: extract_features(
        predict_features, params, images, self.batch_size)
    train, test = features(self.train_images), features(self.test_images)
    return {f'fewshot/{k}shot': fewshot_accuracy(
        train, self.train_labels, test, self.test_labels, k, self.seed,
        self.l2_reg) for k in self.shots}

  def __call__(self, params, mesh) -> Dict[str, float]:
    """`run` with the features of the `model` given at construction."""
    del mesh  # Features are computed batch by batch from the params.
    if self._features is None:
      raise ValueError('FewShotEvaluator(model=...) is needed to call it; '
                       'else use .run(predict_features, params).')
    return self.run(self._features, params)
