"""vit_jax.benchmark: the CLI's JSON record, and the analytic FLOP count."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.conftest import ROOT, tiny_config, python_command
from vit_jax import benchmark
from vit_jax import models
from vit_jax.configs import models as models_config

_FIELDS = {
    'images_per_sec': float, 'step_time_ms': float, 'compile_s': float,
    'gflops_per_image': float, 'achieved_tflops': float,
    'peak_memory_bytes': int, 'device': str, 'model': str, 'mode': str,
    'batch_size': int, 'image_size': int, 'dtype': str, 'steps': int,
}


@pytest.fixture(scope='module')
def records():
  """Both modes of the CLI on the testing preset, run side by side (the
  train step with its blocks scanned)."""
  runs = {mode: subprocess.Popen(
      python_command('-m', 'vit_jax.benchmark', '--model=testing',
       '--image_size=32', '--batch_size=4', '--steps=3', '--warmup=1',
       '--num_classes=10', f'--mode={mode}', f'--scan={mode == "train"}'),
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for mode in ('train', 'infer')}
  out = {}
  for mode, proc in runs.items():
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert 'step 3/3' in stderr  # Progress goes to stderr.
    out[mode] = json.loads(stdout.strip().splitlines()[-1])
  return out


@pytest.mark.parametrize('mode', ['train', 'infer'])
def test_cli_record(records, mode):
  record = records[mode]
  for field, kind in _FIELDS.items():
    assert isinstance(record[field], kind), (field, record[field])
  assert (record['model'], record['mode'], record['batch_size'],
          record['image_size'], record['dtype'], record['steps']) == (
              'testing', mode, 4, 32, 'float32', 3)
  assert record['scan'] == (mode == 'train')
  assert record['images_per_sec'] > 0 and record['compile_s'] > 0
  assert record['peak_memory_bytes'] > 0
  np.testing.assert_allclose(record['images_per_sec'],
                             4 / (record['step_time_ms'] / 1e3), rtol=1e-6)
  # testing: 32 px / 16 px patches -> 4 patches + class token = 5 tokens,
  # hidden 10, MLP 10, 1 layer, 10 classes. Multiply-adds:
  macs = (4 * 16 * 16 * 3 * 10  # Patch embedding.
          + 4 * 5 * 10 * 10 + 2 * 5 * 5 * 10 + 2 * 5 * 10 * 10  # The layer.
          + 10 * 10)  # Head.
  assert record['gflops_per_image'] == pytest.approx(2 * macs / 1e9)
  passes = 3 if mode == 'train' else 1
  assert record['achieved_tflops'] == pytest.approx(
      record['gflops_per_image'] * passes * record['images_per_sec'] / 1e3)
  if record['device'] == 'cpu':
    assert record['mfu'] is None


def test_benchmark_needs_no_tensorflow():
  """The benchmark imports only the step, not the data or writer stack, so
  it runs on a machine with jax but without TensorFlow (an accelerator's)."""
  probe = ('import sys; import vit_jax.benchmark; '
           "print(sorted({m.split('.')[0] for m in sys.modules} & "
           "{'tensorflow', 'tensorflow_datasets', 'clu', 'orbax'}))")
  proc = subprocess.run([sys.executable, '-c', probe], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == '[]'


def _jaxpr_macs(jaxpr):
  """Multiply-adds of every dot and convolution in a (nested) jaxpr."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (contract, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += np.prod(eqn.outvars[0].aval.shape) * np.prod(
          [lhs[d] for d in contract])
    elif eqn.primitive.name == 'conv_general_dilated':
      rhs = eqn.invars[1].aval.shape  # HWIO, as flax lays kernels out.
      total += np.prod(eqn.outvars[0].aval.shape) * np.prod(rhs[:-1])
    for param in eqn.params.values():
      inner = getattr(param, 'jaxpr', param)
      if hasattr(inner, 'eqns'):
        total += _jaxpr_macs(inner)
  return int(total)


@pytest.mark.parametrize('config,size', [
    (models_config.get_model_config('testing'), 32),
    (tiny_config(classifier='gap', representation_size=7), 32),
    (tiny_config(patches={'size': (1, 1)},
                 resnet=dict(num_layers=(2, 1), width_factor=0.5)), 40),
])
def test_flops_formula_counts_every_matmul_and_conv(config, size):
  """The formula against the dots and convs the model actually traces."""
  model = models.VisionTransformer(num_classes=6, **config)
  images = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
  params = jax.eval_shape(
      lambda x: model.init(jax.random.PRNGKey(0), x, train=False), images)
  traced = jax.make_jaxpr(lambda p, x: model.apply(p, x, train=False))(
      params, images)
  assert benchmark.forward_flops(config, size, 6) == 2 * _jaxpr_macs(
      traced.jaxpr)


def test_flops_match_published_vit_b16():
  """DeiT/timm list ViT-B/16 at 224 px as 17.6 G multiply-adds."""
  macs = benchmark.forward_flops(
      models_config.get_model_config('ViT-B_16'), 224, 1000) / 2
  assert macs == pytest.approx(17.6e9, rel=0.005)


def test_peak_table():
  assert benchmark.peak_tflops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.0
  assert benchmark.peak_tflops('TPU v4', 'bfloat16') == 275.0
  assert benchmark.peak_tflops('cpu', 'float32') is None


def test_unknown_model_is_a_value_error():
  with pytest.raises(ValueError, match='Unknown model'):
    benchmark.run('ViT-X_99', batch_size=2, image_size=32, mode='infer',
                  steps=1)


def test_cli_times_an_experiment_config():
  """--config times that experiment's step: its model, batch and image size,
  with --config.FIELD overrides, as main.py would run it."""
  proc = subprocess.run(
      python_command('-m', 'vit_jax.benchmark',
       '--config=configs/testing.py', '--config.batch_size=8',
       '--config.model.hidden_size=12', '--num_classes=10', '--steps=2',
       '--warmup=1'),
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  record = json.loads(proc.stdout.strip().splitlines()[-1])
  assert (record['model'], record['batch_size'], record['image_size'],
          record['mode'], record['steps']) == ('tiny', 8, 16, 'train', 2)
  # configs/testing.py: 16 px / 4 px patches -> 16 patches + class token,
  # hidden 12 (overridden), MLP 32, 2 layers, 10 classes.
  macs = (16 * 4 * 4 * 3 * 12
          + 2 * (4 * 17 * 12 * 12 + 2 * 17 * 17 * 12 + 2 * 17 * 12 * 32)
          + 12 * 10)
  assert record['gflops_per_image'] == pytest.approx(2 * macs / 1e9)


def test_cli_config_with_a_preset_flag_is_a_usage_error():
  proc = subprocess.run(
      python_command('-m', 'vit_jax.benchmark',
       '--config=configs/testing.py', '--model=ViT-B_16', '--batch_size=8'),
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert ('--model, --batch_size with --config: the config sets these'
          in proc.stderr), proc.stderr
