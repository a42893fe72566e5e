"""The evaluators' one interface: `evaluator(params, mesh) -> metrics`."""
import jax
import numpy as np
import pytest

from vit_jax import evaluators
from vit_jax import models
from vit_jax.evaluators import classification
from vit_jax.evaluators import fewshot
from tests.conftest import tiny_config


def _constant(metrics):
  return lambda params, mesh: dict(metrics)


def test_run_all_merges_every_evaluators_metrics():
  got = evaluators.run_all([_constant({'eval/accuracy': 0.5}),
                            _constant({'fewshot/1shot': 0.25})], None, None)
  assert got == {'eval/accuracy': 0.5, 'fewshot/1shot': 0.25}


def test_run_all_refuses_two_evaluators_with_one_name():
  with pytest.raises(ValueError, match=r"\['eval/loss'\]"):
    evaluators.run_all([_constant({'eval/loss': 1.0}),
                        _constant({'eval/loss': 2.0})], None, None)


def test_fewshot_evaluator_called_as_the_loop_calls_it():
  """Given the model, `evaluator(params, mesh)` is `run` with its
  pre-logits features; without one, calling it says what to do."""
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, (40, 16, 16, 3)).astype(np.float32)
  labels = np.arange(40) % 4
  model = models.VisionTransformer(num_classes=4,
                                   **tiny_config(patches={'size': (4, 4)}))
  params = model.init(jax.random.key(0), images[:1], train=False)['params']
  data = (images[:32], labels[:32], images[32:], labels[32:])
  called = fewshot.FewShotEvaluator(*data, shots=(2,), model=model)(params,
                                                                    None)
  ran = fewshot.FewShotEvaluator(*data, shots=(2,)).run(
      fewshot.pre_logits_fn(model), params)
  assert called == ran and set(called) == {'fewshot/2shot'}
  with pytest.raises(ValueError, match='model='):
    fewshot.FewShotEvaluator(*data, shots=(2,))(params, None)


def test_average_flips_scores_the_mean_of_image_and_mirror_logits():
  rng = np.random.RandomState(1)
  images = rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
  batch = {'image': images, 'label': np.arange(8) % 4,
           'mask': np.ones(8, bool)}
  model = models.VisionTransformer(num_classes=4, **tiny_config(
      patches={'size': (4, 4)}, head_zeroinit=False))
  params = model.init(jax.random.key(0), images[:1], train=False)['params']
  logits = lambda x: model.apply({'params': params}, x, train=False)
  mean = (logits(images) + logits(images[:, :, ::-1])) / 2
  want = classification.masked_sums(mean, batch)
  got = classification.make_eval_step(model, average_flips=True)(params,
                                                                 batch)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
  plain = classification.make_eval_step(model)(params, batch)
  assert plain['loss'] != pytest.approx(float(got['loss']), rel=1e-4)
