"""The model shipped in notebooks/models/fashion_mnist_vit/: small and made
by configs/fashion_mnist_vit.py. (As accurate as its README says:
test_notebook.py, whose notebook scores it on the whole test set.)"""
import json
from pathlib import Path
import re
import sys

from vit_jax.configs import common

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


def stated_test_accuracy() -> float:
  """The test accuracy (%) the shipped model's README states. The notebook
  test checks it: the notebook evaluates the model on the whole test set."""
  return float(re.search(r'Test accuracy: \*\*([\d.]+)%\*\*',
                         (MODEL_DIR / 'README.md').read_text()).group(1))
