"""timm / transformers ViT .safetensors: the libraries' own files in and out."""
import json
import re
import shutil
import struct
import subprocess

import jax
import ml_dtypes
import numpy as np
from PIL import Image
import pytest
import safetensors.numpy
import skimage.data

from tests.conftest import ROOT, python_command, read_records, tiny_config, \
    train_in_process, zero_params
from vit_jax import checkpoint
from vit_jax import inference
from vit_jax import models

CASES = {'timm': 'timm_s16_2blocks', 'transformers': 'hf_vit_2blocks'}


def _hub_config(cases, layout):
  """config.json as the library's hub repository has it."""
  if layout == 'timm':
    return {'architecture': 'vit_small_patch16_224', 'num_classes': 10,
            'global_pool': 'token',
            'model_args': cases[CASES['timm']]['timm_kwargs']}
  return {'model_type': 'vit', 'architectures': ['ViTForImageClassification'],
          **cases[CASES['transformers']]['hf_config']}


def _with_config(reference, layout, directory):
  """A copy of the reference file with its library's config.json beside."""
  ref_dir, cases = reference
  directory.mkdir(exist_ok=True)
  path = directory / 'model.safetensors'
  shutil.copy(ref_dir / cases[CASES[layout]]['checkpoint'], path)
  (directory / 'config.json').write_text(
      json.dumps(_hub_config(cases, layout)))
  return str(path)


def _logits(model_config, params, images, num_classes):
  model = models.VisionTransformer(num_classes=num_classes, **model_config)
  return np.asarray(jax.jit(lambda p: model.apply({'params': p}, images,
                                                  train=False))(params))


@pytest.mark.parametrize('layout', list(CASES))
def test_reference_logits(reference, layout):
  ref_dir, cases = reference
  case = cases[CASES[layout]]
  params = checkpoint.load_safetensors(str(ref_dir / case['checkpoint']),
                                       case['model'])
  logits = _logits(case['model'], params, np.load(ref_dir / case['input']),
                   case['num_classes'])
  diff = np.abs(logits - np.load(ref_dir / case['logits'])).max()
  print(f'{layout}: max |logit difference| {diff:.2e}')
  assert diff < 2e-5


@pytest.mark.parametrize('layout', list(CASES))
def test_config_json_describes_the_model(reference, layout, tmp_path):
  _, cases = reference
  path = _with_config(reference, layout, tmp_path)
  config = checkpoint.safetensors_model_config(path).to_dict()
  config.pop('model_name')
  expected = dict(cases[CASES[layout]]['model'])
  expected['transformer'] = {'layer_norm_eps': 1e-6,
                             **expected['transformer']}
  expected['patches'] = {'size': (16, 16)}
  assert config == expected


@pytest.mark.parametrize('layout', list(CASES))
def test_save_writes_the_library_file_back(reference, layout, tmp_path):
  """load then save gives the library's own file, tensor for tensor."""
  ref_dir, cases = reference
  case = cases[CASES[layout]]
  source = str(ref_dir / case['checkpoint'])
  path = str(tmp_path / 'model.safetensors')
  checkpoint.save_safetensors(
      path, checkpoint.load_safetensors(source, case['model']), case['model'],
      layout=layout)
  original, written = (safetensors.numpy.load_file(p) for p in (source, path))
  assert written.keys() == original.keys()
  for key, value in original.items():
    np.testing.assert_array_equal(written[key], value, err_msg=key)
  with safetensors.safe_open(path, 'np') as f:
    assert f.metadata() == {'format': 'pt'}  # transformers requires it.
  hub = json.loads((tmp_path / 'config.json').read_text())
  if layout == 'timm':
    assert hub['architecture'] == 'vit_small_patch16_224'
    assert hub['model_args']['act_layer'] == 'gelu'
    assert hub['model_args']['depth'] == 2
  else:
    expected = dict(case['hf_config'])
    assert len(hub['id2label']) == expected.pop('num_labels')
    assert {k: hub[k] for k in expected} == expected


@pytest.mark.parametrize('layout', list(CASES))
@pytest.mark.parametrize('overrides', [
    {},  # Trained here: tanh GELU.
    dict(classifier='gap', transformer=dict(gelu='exact')),
    dict(patches={'size': (4, 8)}),
    # timm's global_pool='avg' defaults (fc_norm), with its class token.
    dict(classifier='gap', class_token=True, fc_norm=True,
         transformer=dict(gelu='exact')),
])
def test_save_load_identity(layout, overrides, tmp_path):
  config = tiny_config()
  overrides = dict(overrides)
  config.transformer.update(overrides.pop('transformer', {}))
  config.update(overrides)
  if layout == 'transformers' and config.classifier == 'gap':  # (fc_norm too)
    pytest.skip('transformers ViTs have a class token.')
  if layout == 'transformers' and config.patches.size == (4, 8):
    pytest.skip('transformers ViTs have square patches.')
  model = models.VisionTransformer(num_classes=5, **config)
  width = 32 * config.patches.size[1] // config.patches.size[0]  # 4x4 grid.
  params = jax.eval_shape(lambda: model.init(  # Only the shapes are used.
      jax.random.PRNGKey(0), np.zeros((1, 32, width, 3)),
      train=False)['params'])
  params = jax.tree.map(  # All non-zero, so that every entry is checked.
      lambda p: np.random.RandomState(p.size).standard_normal(p.shape).astype(
          np.float32), params)
  path = str(tmp_path / 'model.safetensors')
  checkpoint.save_safetensors(path, params, config, layout=layout)
  loaded = checkpoint.load_safetensors(path)
  assert jax.tree.structure(loaded) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  described = checkpoint.safetensors_model_config(path)
  for field in ('hidden_size', 'classifier', 'class_token', 'fc_norm'):
    assert described.get(field) == config.get(field)
  assert described.patches.size == config.patches.size
  assert described.transformer.num_heads == 2
  assert described.transformer.gelu == config.transformer.get('gelu', 'tanh')


def test_save_unstacks_scanned_blocks(reference, tmp_path):
  ref_dir, cases = reference
  case = cases[CASES['timm']]
  params = checkpoint.load_safetensors(str(ref_dir / case['checkpoint']),
                                       case['model'])
  path = str(tmp_path / 'model.safetensors')
  checkpoint.save_safetensors(path, checkpoint.stack_blocks(params),
                              case['model'])
  jax.tree.map(np.testing.assert_array_equal,
               checkpoint.load_safetensors(path), params)


def _edited(reference, tmp_path, layout, edit):
  """The reference file with `edit(tensors)` applied, and its config.json."""
  path = _with_config(reference, layout, tmp_path)
  tensors = safetensors.numpy.load_file(path)
  edit(tensors)
  safetensors.numpy.save_file(tensors, path)
  return path


def _add(*keys):
  return lambda t: t.update({k: np.ones((1, 1, 384), np.float32)
                             for k in keys})


@pytest.mark.parametrize('layout, edit, message', [
    ('timm', _add('fc_norm.weight', 'fc_norm.bias'), 'both a final norm'),
    ('timm', _add('reg_token'), 'register tokens (reg_token)'),
    ('timm', _add('blocks.0.ls1.gamma', 'blocks.1.ls2.gamma'),
     'layer scale (ls1/ls2, init_values): blocks.0.ls1.gamma, '
     'blocks.1.ls2.gamma'),
    ('timm', _add('blocks.1.attn.q_norm.weight'), 'qk-norm'),
    ('timm', _add('norm_pre.weight'), 'norm_pre'),
    ('timm', _add('attn_pool.latent'), 'attention pooling (attn_pool'),
    ('timm', _add('dist_token', 'head_dist.weight'), 'distillation token'),
    ('timm', _add('something.else'), 'unknown keys: something.else'),
    ('transformers', _add('vit.embeddings.mask_token'), 'mask token'),
    ('timm', lambda t: t.update(pos_embed=t['pos_embed'][:, 1:]),
     'no_embed_class'),
])
def test_unsupported_layouts_are_named(reference, tmp_path, layout, edit,
                                       message):
  path = _edited(reference, tmp_path, layout, edit)
  with pytest.raises(checkpoint.CheckpointMismatchError, match='cannot|no '
                     'class-token|both') as e:
    checkpoint.load_safetensors(path)
  assert message in str(e.value)


@pytest.mark.parametrize('layout, key', [
    ('timm', 'blocks.1.mlp.fc2.weight'),
    ('transformers', 'vit.encoder.layer.0.attention.attention.key.bias'),
    ('timm', 'head.bias'),  # A head must be whole, or absent.
])
def test_missing_keys(reference, tmp_path, layout, key):
  path = _edited(reference, tmp_path, layout, lambda t: t.pop(key))
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match=re.escape(f'lacks these keys (1): {key};')):
    checkpoint.load_safetensors(path)


def test_headless_file_loads_without_head(reference, tmp_path):
  path = _edited(reference, tmp_path, 'timm',
                 lambda t: [t.pop(k) for k in ('head.weight', 'head.bias')])
  assert 'head' not in checkpoint.load_safetensors(path)


def test_not_a_safetensors_file(reference, tmp_path):
  ref_dir, cases = reference
  npz = str(ref_dir / cases['vit_s16_2blocks']['checkpoint'])
  renamed = tmp_path / 'model.safetensors'
  shutil.copy(npz, renamed)
  with pytest.raises(ValueError, match='is not a readable .safetensors'):
    checkpoint.load_safetensors(str(renamed))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    checkpoint.load_safetensors(str(tmp_path / 'none.safetensors'))
  other = tmp_path / 'other.safetensors'
  safetensors.numpy.save_file({'weight': np.ones(3, np.float32)}, str(other))
  with pytest.raises(ValueError, match='neither a timm ViT'):
    checkpoint.load_safetensors(str(other))


def test_model_config_must_match_the_file(reference, tmp_path):
  ref_dir, cases = reference
  case = cases[CASES['transformers']]
  path = str(ref_dir / case['checkpoint'])
  config = json.loads(json.dumps(case['model']))
  del config['transformer']['gelu'], config['transformer']['layer_norm_eps']
  with pytest.raises(checkpoint.CheckpointMismatchError) as e:
    checkpoint.load_safetensors(path, config)
  assert "model.transformer.gelu='tanh', the checkpoint: 'exact'" in str(
      e.value)
  assert 'model.transformer.layer_norm_eps=1e-06, the checkpoint: 1e-12' in \
      str(e.value)
  with pytest.raises(ValueError, match='Cannot tell the head count'):
    checkpoint.load_safetensors(path)  # No config.json beside it.


@pytest.mark.parametrize('change, message', [
    (dict(resnet=dict(num_layers=(), width_factor=1),
          layout='transformers'), 'Hybrid'),
    (dict(resnet=dict(num_layers=(), width_factor=1)), 'params lack'),
    (dict(transformer=dict(layer_norm_eps=1e-12)),
     'timm ViTs use LayerNorm eps'),
    (dict(layout='transformers', classifier='gap'), 'class token'),
    (dict(layout='pytorch'), "layout='pytorch'"),
])
def test_save_errors(tmp_path, change, message):
  config = tiny_config()
  # Shapes only: the errors are about the layout.
  params = zero_params(models.VisionTransformer(num_classes=5, **config),
                       (1, 32, 32, 3))
  change = dict(change)
  layout = change.pop('layout', 'timm')
  config.transformer.update(change.pop('transformer', {}))
  config.update(change)
  if config.classifier == 'gap':
    params = {k: v for k, v in params.items() if k != 'cls'}
  with pytest.raises(ValueError, match=message):
    checkpoint.save_safetensors(str(tmp_path / 'model.safetensors'), params,
                                config, layout=layout)
  assert not list(tmp_path.iterdir())


def test_predict_reads_the_model_from_the_file(reference, tmp_path):
  ref_dir, cases = reference
  case = cases[CASES['transformers']]
  loaded = inference.load_model(_with_config(reference, 'transformers',
                                             tmp_path))
  assert loaded.image_size == 224 and loaded.model.num_classes == 10
  logits = _logits(loaded.config, loaded.params,
                   np.load(ref_dir / case['input']), 10)
  np.testing.assert_allclose(logits, np.load(ref_dir / case['logits']),
                             atol=2e-5)


def test_predict_cli_takes_a_safetensors_checkpoint(reference, tmp_path):
  path = _with_config(reference, 'timm', tmp_path / 'model')
  image = tmp_path / 'photo.png'
  Image.fromarray(skimage.data.astronaut()).save(image)
  result = subprocess.run(
      python_command('-m', 'vit_jax.predict', f'--checkpoint={path}',
       '--top_k=3', '--json', str(image)),
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  predictions = json.loads(result.stdout)[0]['predictions']
  assert len(predictions) == 3
  with pytest.raises(ValueError, match='Pass --model or --config_json'):
    inference.load_model(str(reference[0] / 'vit_s16_2blocks.npz'))


@pytest.mark.parametrize('layout', list(CASES))
def test_finetune_with_main_at_higher_resolution(reference, layout, tmp_path,
                                                 image_folder):
  """main.py's run (in this process) from the hub file, at 240 px."""
  path = _with_config(reference, layout, tmp_path / 'pretrained')
  train_in_process(
      tmp_path / 'workdir', image_folder, f'--config.pretrained_path={path}',
      '--config.batch_size=4', '--config.eval_batch_size=8',
      '--config.log_every=1', '--config.lr.warmup_steps=1',
      config=f'configs/finetune.py:model={path},image_size=240,steps=1')
  params = checkpoint.load_npz(str(tmp_path / 'workdir' / 'params.npz'))
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 1 + 15 * 15, 384)
  assert params['head']['kernel'].shape == (384, 3)
  assert read_records(tmp_path / 'workdir')[-1]['eval/num_examples'] == 21
  written = json.loads((tmp_path / 'workdir' / 'config.json').read_text())
  assert written['model']['transformer']['gelu'] == 'exact'


def test_bfloat16_file_loads_as_float32(reference, tmp_path):
  """Many hub files are bfloat16, which safetensors.numpy cannot read."""
  ref_dir, cases = reference
  case = cases[CASES['timm']]
  tensors = safetensors.numpy.load_file(str(ref_dir / case['checkpoint']))
  bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()}
  header, offset = {}, 0
  for key, value in bf16.items():
    header[key] = {'dtype': 'BF16', 'shape': list(value.shape),
                   'data_offsets': [offset, offset + value.nbytes]}
    offset += value.nbytes
  header = json.dumps(header).encode()
  path = tmp_path / 'model.safetensors'  # The format: size, header, data.
  path.write_bytes(struct.pack('<Q', len(header)) + header +
                   b''.join(v.tobytes() for v in bf16.values()))
  params = checkpoint.load_safetensors(str(path), case['model'])
  assert params['cls'].dtype == np.float32
  np.testing.assert_array_equal(
      params['cls'], bf16['cls_token'].astype(np.float32))


def test_main_rejects_a_file_that_does_not_fit_up_front(reference, tmp_path,
                                                        image_folder):
  """main.py's checks (run in this process) refuse it before writing
  anything; main.py turns the ValueError into one `error:` line, exit 1."""
  path = _with_config(reference, 'timm', tmp_path / 'pretrained')
  with pytest.raises(checkpoint.CheckpointMismatchError) as e:
    train_in_process(
        tmp_path / 'workdir', image_folder, f'--config.pretrained_path={path}',
        config='configs/finetune.py:model=ViT-S_16,image_size=32,steps=1')
  assert 'model.transformer.num_layers=12, the checkpoint: 2' in str(e.value)
  assert "model.transformer.gelu='tanh', the checkpoint: 'exact'" in str(
      e.value)
  assert not (tmp_path / 'workdir' / 'config.json').exists()


def test_timm_gap_file_without_config_json_takes_the_callers_config(
    tmp_path):
  """timm's VisionTransformer(class_token=False, global_pool='avg',
  fc_norm=False) state dict, no config.json: the caller's config decides."""
  config = tiny_config(classifier='gap')
  config.transformer.gelu = 'exact'
  model = models.VisionTransformer(num_classes=5, **config)
  params = jax.eval_shape(lambda: model.init(  # Only the shapes are used.
      jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)),
      train=False)['params'])
  params = jax.tree.map(
      lambda p: np.random.RandomState(p.size).standard_normal(p.shape).astype(
          np.float32), params)
  path = tmp_path / 'model.safetensors'
  checkpoint.save_safetensors(str(path), params, config, layout='timm')
  hub = json.loads((tmp_path / 'config.json').read_text())
  assert hub['model_args']['class_token'] is False
  assert hub['global_pool'] == 'avg'
  (tmp_path / 'config.json').unlink()
  loaded = checkpoint.load_safetensors(str(path), config)
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  images = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3))
  apply = jax.jit(lambda p: model.apply({'params': p}, images, train=False))
  np.testing.assert_array_equal(apply(loaded), apply(params))
  # The caller asking for a class token the file lacks is still an error.
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match="model.classifier='token', the checkpoint: 'gap'"):
    checkpoint.load_safetensors(str(path), tiny_config(
        transformer=dict(config.transformer)))
  # With a config.json that contradicts the shapes, a real disagreement.
  hub['global_pool'] = hub['model_args']['global_pool'] = 'token'
  (tmp_path / 'config.json').write_text(json.dumps(hub))
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match="global_pool='token' without a class token"):
    checkpoint.load_safetensors(str(path), config)
