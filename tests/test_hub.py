"""hf-hub: names, offline against hub caches laid out as huggingface_hub
lays them out (blobs/, snapshots/<commit>/ links, refs/main)."""
import hashlib
import json
import os
import subprocess
import types

import flax.traverse_util
import jax
import numpy as np
import pytest
import safetensors.numpy

from tests.conftest import ROOT, tiny_config, python_command
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.checkpoint import hub
from vit_jax.models import resnet

COMMIT = '0123456789abcdef0123456789abcdef01234567'


def write_repo(cache, repo_id, files, *, commit=COMMIT, links=True):
  """A repo in a hub cache, as hf_hub_download leaves it: every file a blob
  named by its sha256, linked from snapshots/<commit>/, and refs/main.
  `links=False`: snapshot entries hold the link's text (a cache copied
  without symlinks)."""
  repo = cache / f'models--{repo_id.replace("/", "--")}'
  for name, data in files.items():
    blob = repo / 'blobs' / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    entry = repo / 'snapshots' / commit / name
    entry.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, entry.parent)
    if links:
      entry.symlink_to(target)
    else:
      entry.write_text(target)
  (repo / 'refs').mkdir(exist_ok=True)
  (repo / 'refs' / 'main').write_text(commit)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
  cache = tmp_path / 'hub'
  cache.mkdir()
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  monkeypatch.setenv('HF_HUB_CACHE', str(cache))
  return cache


def _init(config, num_classes, size=32):
  """The model and random params of its shapes (no compilation)."""
  model = models.create(config, num_classes)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), np.zeros((1, size, size, 3)),
                         train=False)['params'])
  rng = np.random.default_rng(0)
  return model, jax.tree.map(
      lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes)


def _jit_apply(model, params, images):
  """`model`'s inference logits, compiled (not op by op)."""
  return jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))(
      params, images)


def _images(size=32, n=2):
  return np.asarray(jax.random.uniform(jax.random.key(2), (n, size, size, 3),
                                       minval=-1, maxval=1))


def _saved_repo(cache, repo_id, params, config, tmp_path):
  """`save_safetensors(layout='timm')`'s two files as a hub repo."""
  path = tmp_path / 'export' / 'model.safetensors'
  path.parent.mkdir(exist_ok=True)
  checkpoint.save_safetensors(str(path), params, config, layout='timm')
  write_repo(cache, repo_id, {
      'model.safetensors': path.read_bytes(),
      'config.json': (path.parent / 'config.json').read_bytes()})


def _assert_same_params(got, want):
  got, want = (flax.traverse_util.flatten_dict(dict(p)) for p in (got, want))
  assert set(got) == set(want)
  for key, value in want.items():
    np.testing.assert_array_equal(got[key], value, err_msg='/'.join(key))


def test_parse():
  assert hub.parse('hf-hub:timm/vit_b.augreg@v1.0/sub/x.npz') == (
      'timm/vit_b.augreg', 'v1.0', 'sub/x.npz')
  assert hub.parse('hf-hub:google/vit-base-patch16-224') == (
      'google/vit-base-patch16-224', None, None)
  with pytest.raises(hub.HubError, match='hf-hub:ORG/NAME'):
    hub.parse('hf-hub:no_org')


@pytest.mark.parametrize('links', [True, False])
def test_vit_by_hub_name(offline_cache, tmp_path, links):
  config = tiny_config()
  config.transformer.update(gelu='exact', layer_norm_eps=1e-6)
  _, params = _init(config, 5)
  path = tmp_path / 'model.safetensors'
  checkpoint.save_safetensors(str(path), params, config, layout='timm')
  write_repo(offline_cache, 'timm/tiny_vit', {
      'model.safetensors': path.read_bytes(),
      'config.json': (tmp_path / 'config.json').read_bytes()}, links=links)
  name = 'hf-hub:timm/tiny_vit'
  loaded_config = checkpoint.safetensors_model_config(name)
  assert loaded_config.transformer.num_heads == 2
  _assert_same_params(checkpoint.load_params(name, loaded_config), params)
  # The revision pins the snapshot; an unknown one is an error.
  assert checkpoint.load_params(f'hf-hub:timm/tiny_vit@{COMMIT}', config)
  with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE"):
    checkpoint.load_params('hf-hub:timm/tiny_vit@v9', config)


# timm's Bottleneck modules -> the original's unit names (written out here
# independently of checkpoint_torch's table).
_UNIT_NAMES = {'conv1': 'conv1', 'conv2': 'conv2', 'conv3': 'conv3',
               'norm1': 'gn1', 'norm2': 'gn2', 'norm3': 'gn3',
               'downsample.conv': 'conv_proj', 'downsample.norm': 'gn_proj'}


def _timm_hybrid_state_dict(params):
  """The backbone part of a timm hybrid's state dict of flax params, key by
  key as timm names them (PyTorch OIHW convs)."""
  flat = {'/'.join(k): np.asarray(v) for k, v in
          flax.traverse_util.flatten_dict(params).items()}
  out = {}
  bb = 'patch_embed.backbone.'
  for path, value in flat.items():
    parts = path.split('/')
    if not (parts[0].endswith('_root') or parts[0].startswith('block')):
      continue
    leaf = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}[parts[-1]]
    if value.ndim == 4:
      value = np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    if parts[0] in ('conv_root', 'gn_root'):
      out[f'{bb}stem.{"conv" if parts[0] == "conv_root" else "norm"}.{leaf}'] = value
    elif parts[0].startswith('block'):
      unit = {v: k for k, v in _UNIT_NAMES.items()}[parts[2]]
      out[f'{bb}stages.{int(parts[0][5:]) - 1}.blocks.'
          f'{int(parts[1][4:]) - 1}.{unit}.{leaf}'] = value
  return out


def test_timm_hybrid_by_hub_name(offline_cache, tmp_path):
  """A staged ResNetV2 backbone: keys mapped as timm names them, the model
  config from config.json + shapes, timm's weight standardisation."""
  config = tiny_config(patches={'size': (1, 1)}, resnet=dict(
      num_layers=(1, 1), width_factor=0.5, std_conv='timm'))
  config.transformer.update(gelu='exact', layer_norm_eps=1e-6)
  _, params = _init(config, 3)
  backbone = _timm_hybrid_state_dict(params)
  vit_only = {k: v for k, v in params.items() if k not in (
      'conv_root', 'gn_root', 'block1', 'block2')}
  vit_config = tiny_config(patches={'size': (1, 1)})
  vit_config.transformer.update(gelu='exact', layer_norm_eps=1e-6)
  vit_path = tmp_path / 'vit.safetensors'
  checkpoint.save_safetensors(str(vit_path), vit_only, vit_config)
  tensors = {**safetensors.numpy.load_file(str(vit_path)), **backbone}
  hub_config = {'architecture': 'vit_small_r26_s32_224', 'num_classes': 3,
                'global_pool': 'token',
                'model_args': {'embed_dim': 16, 'depth': 2, 'num_heads': 2,
                               'num_classes': 3}}
  write_repo(offline_cache, 'timm/tiny_hybrid', {
      'model.safetensors': safetensors.numpy.save(tensors),
      'config.json': json.dumps(hub_config).encode()})
  name = 'hf-hub:timm/tiny_hybrid'
  loaded_config = checkpoint.safetensors_model_config(name)
  assert loaded_config.resnet.to_dict() == dict(
      num_layers=(1, 1), width_factor=0.5, std_conv='timm')
  loaded = checkpoint.load_safetensors(name)
  # The ResNet kernels come stored standardised as timm's StdConv2d does it
  # (torch_layouts._STD_CONV); everything else as it is.
  flat = flax.traverse_util.flatten_dict(dict(loaded))
  for key, value in flax.traverse_util.flatten_dict(dict(params)).items():
    if key[0] in ('conv_root', 'block1', 'block2') and key[-1] == 'kernel':
      centred = value.astype(np.float64) - value.mean(axis=(0, 1, 2))
      value = centred / np.sqrt(centred.var(axis=(0, 1, 2)) + 1e-8)
      np.testing.assert_allclose(flat[key], value, rtol=1e-5, atol=1e-6)
    else:
      np.testing.assert_array_equal(flat[key], value, err_msg='/'.join(key))
  # So either standardisation formula computes timm's function. (Jitted:
  # compiled, the three forward passes cost a third of op by op.)
  want = _jit_apply(models.create(config, 3), params, _images())
  for std_conv in ('timm', 'original'):
    other = tiny_config(patches={'size': (1, 1)}, resnet=dict(
        num_layers=(1, 1), width_factor=0.5, std_conv=std_conv))
    other.transformer.update(gelu='exact', layer_norm_eps=1e-6)
    got = _jit_apply(models.create(other, 3), loaded, _images())
    np.testing.assert_allclose(got, want, atol=2e-5, err_msg=std_conv)


def test_timm_weight_standardisation():
  """'timm': (w - mean) / sqrt(var + 1e-8) (a batch norm of the weight);
  'original': (w - mean) / (std + 1e-5)."""
  w = np.random.default_rng(0).normal(size=(3, 3, 4, 2)).astype(np.float32)
  x = np.random.default_rng(1).normal(size=(1, 5, 5, 4)).astype(np.float32)
  centred = w - w.mean(axis=(0, 1, 2))
  for std_conv, want in [
      ('timm', centred / np.sqrt(centred.var(axis=(0, 1, 2)) + 1e-8)),
      ('original', centred / (centred.std(axis=(0, 1, 2)) + 1e-5))]:
    conv = resnet.StdConv(2, (3, 3), use_bias=False, std_conv=std_conv)
    got = conv.apply({'params': {'kernel': w}}, x)
    expected = jax.lax.conv_general_dilated(
        x, want, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_reference_hybrid_from_the_shared_hub_cache(reference, monkeypatch):
  """timm's own vit_small_r26_s32_224 repo (depth 2, one unit per stage)."""
  ref_dir, cases = reference
  case = cases['hub_r26_s32']
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  monkeypatch.setenv('HF_HUB_CACHE', str(ref_dir / 'hub_cache'))
  params = checkpoint.load_safetensors(case['repo'])
  # The model the repo describes, and the case's own model entry (without
  # resnet.std_conv: the original's standardisation formula). Jitted: the
  # ResNet-26 at 224 px took ~12 s op by op, ~4 s compiled (the same
  # logits to ~3e-6 both ways).
  for source, config in (
      ('repo', checkpoint.safetensors_model_config(case['repo'])),
      ('case', case['model'])):
    logits = _jit_apply(models.create(config, case['num_classes']), params,
                        np.load(ref_dir / case['input']))
    diff = np.abs(np.asarray(logits) - np.load(ref_dir / case['output'])).max()
    print(f'hub_r26_s32 ({source} config): max |logit difference| {diff:.2e}')
    assert diff < 2e-5, source


def test_headless_repo_is_a_feature_extractor(offline_cache, tmp_path):
  """num_classes 0: models.create(config, 0) gives the pooled features, a
  fine-tuning init gets a new head."""
  config = tiny_config()
  config.transformer.update(gelu='exact', layer_norm_eps=1e-6)
  model, params = _init(config, 0)
  assert 'head' not in params
  _saved_repo(offline_cache, 'timm/headless', params, config, tmp_path)
  name = 'hf-hub:timm/headless'
  loaded_config = checkpoint.safetensors_model_config(name)
  features = _jit_apply(models.create(loaded_config, 0),
                        checkpoint.load_params(name, loaded_config), _images())
  assert features.shape == (2, 16)
  np.testing.assert_array_equal(features,
                                _jit_apply(model, params, _images()))
  fresh = jax.jit(lambda key: models.create(loaded_config, 4).init(
      key, np.zeros((1, 32, 32, 3)), train=False)['params'])(
          jax.random.key(3))
  tuned = checkpoint.load_pretrained(
      pretrained_path=name, init_params=fresh, model_config=loaded_config)
  assert tuned['head']['kernel'].shape == (16, 4)
  np.testing.assert_array_equal(tuned['cls'], params['cls'])


def _predict(cache, *args):
  env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(cache))
  return subprocess.run(
      python_command('-m', 'vit_jax.predict', *args), cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=300, check=False)


def test_predict_errors(offline_cache, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = tmp_path / 'x.png'
  Image.new('RGB', (32, 32)).save(image)
  result = _predict(offline_cache, '--checkpoint=hf-hub:timm/no_such_repo',
                    str(image))
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert 'timm/no_such_repo' in lines[0] and 'HF_HUB_OFFLINE' in lines[0]
  assert 'Traceback' not in result.stderr
  # A headless repo has nothing to predict with.
  config = tiny_config()
  config.transformer.update(gelu='exact', layer_norm_eps=1e-6)
  _, params = _init(config, 0)
  _saved_repo(offline_cache, 'timm/headless', params, config, tmp_path)
  result = _predict(offline_cache, '--checkpoint=hf-hub:timm/headless',
                    str(image))
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "error: Checkpoint 'hf-hub:timm/headless' has no classifier head to "
      'predict with.')


def test_not_a_vit(offline_cache):
  write_repo(offline_cache, 'someone/bert', {
      'model.safetensors': safetensors.numpy.save(
          {'embeddings.word_embeddings.weight': np.zeros((4, 2), np.float32)}),
      'config.json': b'{}'})
  with pytest.raises(ValueError, match='neither a timm ViT'):
    checkpoint.safetensors_model_config('hf-hub:someone/bert')


def test_timm_mixer_by_hub_name(offline_cache, tmp_path):
  config = {'model_name': 'tiny_mixer', 'patches': {'size': (8, 8)},
            'hidden_dim': 16, 'num_blocks': 2, 'tokens_mlp_dim': 8,
            'channels_mlp_dim': 32, 'gelu': 'exact'}
  _, params = _init(config, 3)
  _saved_repo(offline_cache, 'timm/tiny_mixer', params, config, tmp_path)
  keys = safetensors.numpy.load_file(
      str(tmp_path / 'export' / 'model.safetensors'))
  assert {'stem.proj.weight', 'blocks.1.mlp_tokens.fc2.bias',
          'blocks.0.mlp_channels.fc1.weight', 'norm.weight',
          'head.weight'} <= set(keys)
  assert keys['stem.proj.weight'].shape == (16, 3, 8, 8)
  name = 'hf-hub:timm/tiny_mixer'
  loaded_config = checkpoint.safetensors_model_config(name)
  assert dict(loaded_config.to_dict(), model_name='tiny_mixer') == config
  _assert_same_params(checkpoint.load_params(name, loaded_config), params)
  with pytest.raises(checkpoint.CheckpointMismatchError, match='num_blocks'):
    checkpoint.load_params(name, dict(config, num_blocks=3))


def test_timm_mixer_of_a_registered_size_is_written_as_timm_does(
    offline_cache, tmp_path, monkeypatch):
  """A size timm registers: config.json names the architecture and holds
  no sizes (as timm's own hub files), and reads back to the same model."""
  from vit_jax.checkpoint import torch_mixer  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(torch_mixer, '_REGISTERED',
                      {(8, 2, 16): 'mixer_t8_224'})
  config = {'model_name': 'tiny_mixer', 'patches': {'size': (8, 8)},
            'hidden_dim': 16, 'num_blocks': 2, 'tokens_mlp_dim': 8,
            'channels_mlp_dim': 64, 'gelu': 'exact'}
  _, params = _init(config, 3)
  _saved_repo(offline_cache, 'timm/registered', params, config, tmp_path)
  written = json.loads((tmp_path / 'export' / 'config.json').read_text())
  assert written['architecture'] == 'mixer_t8_224'
  assert written['model_args'] == {'img_size': 32, 'num_classes': 3}
  loaded_config = checkpoint.safetensors_model_config('hf-hub:timm/registered')
  assert dict(loaded_config.to_dict(), model_name='tiny_mixer') == config
  # A tanh GELU (a Mixer trained here) has no registered equivalent.
  config['gelu'] = 'tanh'
  checkpoint.save_safetensors(str(tmp_path / 'tanh.safetensors'), params,
                              config, layout='timm')
  written = json.loads((tmp_path / 'config.json').read_text())
  assert written['model_args']['act_layer'] == 'gelu_tanh'
  assert written['model_args']['mlp_ratio'] == [0.5, 4.0]


def test_augreg_name_falls_back_to_the_hub(offline_cache, tmp_path,
                                           monkeypatch, capsys):
  """gs://vit_models unreadable: R_Ti_16 is timm's .augreg_in21k repo,
  loaded into the original's preset (tanh GELU, its standardisation)."""
  from vit_jax.checkpoint import augreg  # pylint: disable=g-import-not-at-top
  from vit_jax import remote  # pylint: disable=g-import-not-at-top
  from vit_jax.configs import models as models_config  # pylint: disable=g-import-not-at-top

  def forbidden(path, what, **_):
    raise remote.RemotePathError(f'{what}={path}: HTTP 403 AccessDenied.')
  monkeypatch.setattr(remote, 'check', forbidden)

  preset = models_config.get_model_config('R+ViT-Ti_16')
  timm_config = preset.to_dict()
  timm_config['transformer'].update(gelu='exact', layer_norm_eps=1e-6)
  timm_config['resnet']['std_conv'] = 'timm'
  _, params = _init(timm_config, 0, size=64)
  _saved_repo(offline_cache, 'timm/vit_tiny_r_s16_p8_224.augreg_in21k',
              params, timm_config, tmp_path)

  path = augreg.checkpoint_path('R_Ti_16')
  assert path == 'hf-hub:timm/vit_tiny_r_s16_p8_224.augreg_in21k'
  assert path in capsys.readouterr().err
  checkpoint.check_safetensors(path, preset)  # As validate does.
  _, fresh = _init(preset, 5, size=64)
  tuned = checkpoint.load_pretrained(pretrained_path=path, init_params=fresh,
                                     model_config=preset)
  kernel = params['conv_root']['kernel'].astype(np.float64)
  kernel -= kernel.mean(axis=(0, 1, 2))  # Stored standardised (timm's way).
  np.testing.assert_allclose(
      tuned['conv_root']['kernel'],
      kernel / np.sqrt(kernel.var(axis=(0, 1, 2)) + 1e-8), rtol=1e-5,
      atol=1e-6)
  assert tuned['head']['kernel'].shape == (192, 5)


def test_tanh_gelu_only_for_the_original_weights(offline_cache, tmp_path):
  config = tiny_config()
  config.transformer.update(gelu='exact', layer_norm_eps=1e-6)
  _, params = _init(config, 3)
  _saved_repo(offline_cache, 'someone/finetuned', params, config, tmp_path)
  tanh = tiny_config()
  tanh.transformer.layer_norm_eps = 1e-6
  with pytest.raises(checkpoint.CheckpointMismatchError, match='gelu'):
    checkpoint.check_safetensors('hf-hub:someone/finetuned', tanh)


def test_is_cached(offline_cache):
  write_repo(offline_cache, 'timm/cached', {'model.safetensors': b'x'})
  assert hub.is_cached('hf-hub:timm/cached')
  assert not hub.is_cached('hf-hub:timm/not_cached')


@pytest.mark.parametrize('error, says', [
    ('GatedRepoError', 'HF_TOKEN'),
    ('RepositoryNotFoundError', 'does not exist'),
    ('RevisionNotFoundError', "no revision 'v2'"),
    ('RemoteEntryNotFoundError', "no file 'model.safetensors'"),
])
def test_hub_failures_say_what_to_do(monkeypatch, error, says):
  """huggingface_hub's online failures, each one line naming the repo."""
  from huggingface_hub import errors as hub_errors  # pylint: disable=g-import-not-at-top

  def fail(*args, **kwargs):
    del args, kwargs
    response = types.SimpleNamespace(headers={}, status_code=404, request=None)
    raise getattr(hub_errors, error)('the hub said no', response=response)
  monkeypatch.setattr(hub.huggingface_hub, 'hf_hub_download', fail)
  monkeypatch.setattr(hub, '_hub_resolves', lambda: True)  # Online.
  with pytest.raises(hub.HubError) as raised:
    hub.resolve('hf-hub:google/vit-x@v2')
  message = str(raised.value)
  assert says in message and 'google/vit-x' in message and '\n' not in message


def test_no_network(monkeypatch):
  monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
  monkeypatch.setattr(hub.hub_constants, 'HF_HUB_OFFLINE', False)

  def fail(*args, **kwargs):
    del args, kwargs
    raise hub.hub_errors.LocalEntryNotFoundError('connection refused')
  monkeypatch.setattr(hub.huggingface_hub, 'hf_hub_download', fail)
  monkeypatch.setattr(hub, '_hub_resolves', lambda: True)  # DNS, no route.
  with pytest.raises(hub.HubError, match='cannot reach the Hugging Face hub'
                     ' for hf-hub:google/vit-x'):
    hub.resolve('hf-hub:google/vit-x')


def test_unresolvable_hub_host_means_the_cache_at_once(tmp_path,
                                                      monkeypatch):
  """No DNS for the hub (HF_ENDPOINT on a .invalid name, which never
  resolves): a cached file loads and an uncached one is today's one-line
  error, both without a request, so without huggingface_hub's six tries and
  their warnings over ~30 s."""
  cache = tmp_path / 'hub'
  write_repo(cache, 'timm/cached', {'model.safetensors': b'weights'})
  monkeypatch.setenv('HF_HUB_CACHE', str(cache))
  monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
  monkeypatch.setattr(hub.hub_constants, 'HF_HUB_OFFLINE', False)
  monkeypatch.setattr(hub.hub_constants, 'ENDPOINT',
                      'http://nonexistent.invalid')
  for variable in hub._PROXY_VARIABLES:  # pylint: disable=protected-access
    monkeypatch.delenv(variable, raising=False)

  def no_request(*args, **kwargs):
    raise AssertionError(f'a hub request: {args} {kwargs}')
  monkeypatch.setattr(hub.huggingface_hub, 'hf_hub_download', no_request)
  assert not hub._hub_resolves()  # pylint: disable=protected-access
  with open(hub.resolve('hf-hub:timm/cached'), 'rb') as f:
    assert f.read() == b'weights'
  assert hub.resolve_config('hf-hub:timm/cached') is None  # Not cached.
  with pytest.raises(hub.HubError) as raised:
    hub.resolve('hf-hub:timm/not_cached')
  assert str(raised.value) == (
      'cannot reach the Hugging Face hub for hf-hub:timm/not_cached, and it '
      f'is not in the hub cache {cache}: check the network (or proxy), or '
      'download it elsewhere and copy the cache.')
  monkeypatch.setenv('HTTPS_PROXY', 'http://proxy.invalid:3128')
  assert hub._hub_resolves()  # pylint: disable=protected-access  (the proxy's)


def test_main_with_a_missing_hub_model_is_one_error_line(offline_cache,
                                                         tmp_path):
  """configs/finetune.py:model=hf-hub:... of a repo that cannot be had:
  the hub's message as one `error:` line, exit 1, before any training."""
  result = subprocess.run(
      python_command(str(ROOT / 'main.py'), f'--workdir={tmp_path / "w"}',
       '--config=configs/finetune.py:model=hf-hub:timm/no_such_repo'),
      cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode == 1, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      'error: hf-hub:timm/no_such_repo is not in the hub cache'), lines
  assert not (tmp_path / 'w').exists()
