"""The model shipped in notebooks/models/fashion_mnist_vit/: small, made by
configs/fashion_mnist_vit.py, and as accurate as its README says."""
import json
from pathlib import Path
import re
import sys

import ml_collections
import numpy as np

from tests.conftest import needs_fashion_mnist
from vit_jax import inference
from vit_jax.configs import common
from vit_jax.data import sources

MODEL_DIR = (Path(__file__).resolve().parents[1] / 'notebooks' / 'models' /
             'fashion_mnist_vit')


def _without_new_defaults(current, shipped, defaults):
  """`current` less the fields added to the configs after the model was
  trained (absent from `shipped`) that hold their base default: options
  that are off (EMA, Mixup, ...) do not change the recipe."""
  out = {}
  for key, value in current.items():
    if key not in shipped:
      if not isinstance(defaults, dict) or defaults.get(key, ...) != value:
        out[key] = value  # A new field set to something: a real change.
    elif isinstance(value, dict) and isinstance(shipped[key], dict):
      out[key] = _without_new_defaults(
          value, shipped[key],
          defaults.get(key, {}) if isinstance(defaults, dict) else {})
    else:
      out[key] = value
  return out


def test_small_and_made_by_its_config():
  assert (MODEL_DIR / 'params.npz').stat().st_size < 3e6
  root = str(MODEL_DIR.parents[2])
  if root not in sys.path:
    sys.path.insert(0, root)
  from configs import fashion_mnist_vit  # pylint: disable=g-import-not-at-top
  shipped = json.loads((MODEL_DIR / 'config.json').read_text())
  current = _without_new_defaults(
      json.loads(fashion_mnist_vit.get_config().to_json_best_effort()),
      shipped, json.loads(common.base_config().to_json_best_effort()))
  assert shipped == current, (
      'configs/fashion_mnist_vit.py (or the default job it starts from) '
      'changed: re-train the shipped model (README.md beside it).')
  labels = (MODEL_DIR / 'labels.txt').read_text().splitlines()
  assert labels[0] == 'T-shirt/top' and len(labels) == 10


@needs_fashion_mnist
def test_test_accuracy_is_the_one_its_readme_states():
  stated = float(re.search(r'Test accuracy: \*\*([\d.]+)%\*\*',
                           (MODEL_DIR / 'README.md').read_text()).group(1))
  loaded = inference.load_model(str(MODEL_DIR / 'params.npz'),
                                config_json=str(MODEL_DIR / 'config.json'))
  assert loaded.image_size == 28
  job = ml_collections.ConfigDict(
      json.loads((MODEL_DIR / 'config.json').read_text()))
  test = sources.get_source(job, 'test')
  batch = test.fetch(np.arange(test.num_examples))
  images = np.repeat(batch['image'] / 127.5 - 1, 3, axis=-1).astype(np.float32)
  _, top = inference.predict(loaded.model, loaded.params, images, top_k=1)
  accuracy = 100 * np.mean(top[:, 0] == batch['label'])
  # Same params, same images; 1 device here against the trainer's 2 may
  # flip a borderline image or two.
  assert abs(accuracy - stated) <= 0.03, (accuracy, stated)

