"""vit_jax.export: SavedModel and StableHLO exports equal the JAX model."""
import functools
import subprocess

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tests.conftest import ROOT, tiny_config, python_command
from vit_jax import export
from vit_jax.data import input_pipeline
from vit_jax.train import steps
from vit_jax.workdir import run as run_dir


@pytest.fixture(scope='module')
def run(trained_run):
  return run_dir.load(str(trained_run))


@pytest.fixture(scope='module')
def test_images(image_folder):
  """The image folder's test split as uint8 [21, 16, 16, 3]."""
  paths = sorted((image_folder / 'test').glob('*/*.png'))
  return np.stack([np.asarray(Image.open(p).convert('RGB')) for p in paths])


def _jax_probabilities(run, images):
  """The softmax of the model on the trainer's eval input for `images`."""
  x = input_pipeline.eval_model_input(images, run.config)
  return np.asarray(jax.nn.softmax(
      run.model.apply({'params': run.params}, x, train=False)))


def test_saved_model_matches_jax(run, trained_run, test_images, tmp_path):
  out = str(tmp_path / 'saved_model')
  summary = export.export_run(str(trained_run), out)
  assert 'uint8 images [N, 16, 16, 3] -> probabilities [N, 3]' in summary
  serve = tf.saved_model.load(out).signatures['serving_default']
  for batch in (1, 21):
    images = test_images[:batch]
    outputs = serve(images=tf.constant(images))
    assert outputs['probabilities'].shape == (batch, 3)
    np.testing.assert_allclose(outputs['probabilities'].numpy(),
                               _jax_probabilities(run, images), atol=1e-5)
    assert outputs['classes'].numpy().tolist() == [
        [b'class0', b'class1', b'class2']] * batch


def test_stablehlo_round_trip(run, trained_run, test_images, tmp_path):
  """The CLI writes the artifact; jax.export.deserialize runs it."""
  out = tmp_path / 'model.stablehlo'
  proc = subprocess.run(
      python_command('-m', 'vit_jax.export', f'--workdir={trained_run}',
       f'--out={out}', '--format=stablehlo'), cwd=ROOT, capture_output=True,
      text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith(f'{out}: stablehlo of ')
  exported = jax.export.deserialize(out.read_bytes())
  assert exported.platforms == export.PLATFORMS
  for batch in (2, 5):
    np.testing.assert_allclose(
        exported.call(test_images[:batch]),
        _jax_probabilities(run, test_images[:batch]), atol=1e-5)


_MIXER = ml_collections.ConfigDict(dict(
    model_name='tiny-mixer', patches={'size': (8, 8)}, hidden_dim=8,
    num_blocks=1, tokens_mlp_dim=4, channels_mlp_dim=8))


@pytest.mark.parametrize('family', ['hybrid', 'mixer'])
def test_other_families_export(family, tmp_path):
  """The other families through steps.create_model: a ResNet-stem hybrid and
  an MLP-Mixer (CPU lowering only, to keep the test short)."""
  config = _MIXER if family == 'mixer' else tiny_config(
      patches={'size': (1, 1)}, resnet=dict(num_layers=(1,), width_factor=0.5))
  config = ml_collections.ConfigDict(dict(model=config))
  model = steps.create_model(config, 4)
  params = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))['params']
  params = jax.tree.map(  # A head that is not zero: distinct probabilities.
      lambda p: p + 0.1 * np.random.RandomState(0).standard_normal(p.shape),
      params)
  images = np.random.RandomState(1).randint(0, 256, (3, 16, 16, 3), np.uint8)
  logits = jax.jit(functools.partial(model.apply, train=False))(
      {'params': params}, images / 127.5 - 1)
  expected = np.asarray(jax.nn.softmax(logits))
  exported = export.export_stablehlo(model, params, 16, platforms=['cpu'])
  np.testing.assert_allclose(exported.call(images), expected, atol=1e-5)
  export.save_saved_model(str(tmp_path / 'sm'), model, params, list('abcd'),
                          16, platforms=['cpu'])
  serve = tf.saved_model.load(str(tmp_path / 'sm')).signatures[
      'serving_default']
  np.testing.assert_allclose(serve(images=images)['probabilities'], expected,
                             atol=1e-5)


def test_fixed_batch_converts_to_tflite(run, tmp_path, test_images):
  """README's TFLite recipe: a fixed batch size, builtins + select TF ops
  (for the class-name strings)."""
  export.save_saved_model(str(tmp_path / 'sm'), run.model, run.params,
                          run.class_names, 16, batch_size=1)
  converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / 'sm'))
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                         tf.lite.OpsSet.SELECT_TF_OPS]
  interpreter = tf.lite.Interpreter(model_content=converter.convert())
  outputs = interpreter.get_signature_runner()(images=test_images[:1])
  np.testing.assert_allclose(outputs['probabilities'],
                             _jax_probabilities(run, test_images[:1]),
                             atol=1e-5)


def test_bad_arguments(trained_run, tmp_path):
  with pytest.raises(ValueError, match='--format=onnx: use one of'):
    export.export_run(str(trained_run), str(tmp_path / 'x'), fmt='onnx')
  with pytest.raises(FileExistsError, match='exists; remove it'):
    export.export_run(str(trained_run), str(tmp_path))
