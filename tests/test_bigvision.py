"""big_vision ViT checkpoints: the shared reference case (made with
big_vision's own models/vit.py) and small big_vision-layout files built here
from a model whose logits are known."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import read_records, tiny_config, train_in_process, \
    zero_params
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.checkpoint import big_vision

IMAGES = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)).astype(
    np.float32)


def test_reference_case(reference):
  ref_dir, cases = reference
  case = cases['bv_s16_map']
  params = checkpoint.load_npz(str(ref_dir / case['checkpoint']))
  config = big_vision.config_from_kwargs(case['big_vision_kwargs'])
  inferred = big_vision.model_config(params)
  for field in ('patches', 'hidden_size', 'transformer', 'classifier',
                'posemb', 'representation_size'):
    assert inferred[field] == config[field], field
  images = np.load(ref_dir / case['input'])
  logits = jax.jit(lambda p: models.create(config, case['num_classes']).apply(
      {'params': p}, images, train=False))(params)
  np.testing.assert_allclose(logits, np.load(ref_dir / case['logits']),
                             atol=3e-5, rtol=0)


def _random_model(**overrides):
  """A tiny model with every param random (class token and head included)."""
  config = tiny_config(**{'posemb': 'learn', **overrides})
  model = models.create(config, 5)
  params = model.init(jax.random.PRNGKey(0), IMAGES[:1],
                      train=False)['params']
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(tree, [
      np.asarray(x + 0.2 * jax.random.normal(k, x.shape))
      for x, k in zip(leaves, keys)])
  return config, model, params


def _big_vision_layout(params, *, stacked=False):
  """Our params -> the flat keys big_vision writes for the same function:
  position embeddings at the top level without the class token's row (whose
  embedding is folded into `cls`, which big_vision adds none to)."""
  flat = {'/'.join(k): v for k, v in
          flax.traverse_util.flatten_dict(params).items()}
  posemb = flat.pop('Transformer/posembed_input/pos_embedding', None)
  if posemb is not None:
    if 'cls' in flat:
      flat['cls'] = flat['cls'] + posemb[:, :1]
      posemb = posemb[:, 1:]
    flat['pos_embedding'] = posemb
  if stacked:
    blocks = sorted({k.split('/')[1] for k in flat
                     if k.startswith('Transformer/encoderblock_')})
    for rest in {k.split('/', 2)[2] for k in flat
                 if k.startswith('Transformer/encoderblock_0/')}:
      flat[f'Transformer/encoderblock/{rest}'] = np.stack(
          [flat.pop(f'Transformer/{b}/{rest}') for b in blocks])
  return flat


@pytest.mark.parametrize('overrides,stacked', [
    (dict(classifier='token', representation_size=12), False),
    (dict(classifier='token'), True),
    (dict(classifier='map'), False),
    (dict(classifier='gap', posemb='sincos2d', representation_size=16),
     False),
    (dict(classifier='token', posemb='sincos2d'), False),
])
def test_big_vision_layout_loads_to_the_same_function(tmp_path, overrides,
                                                      stacked):
  config, model, params = _random_model(**overrides)
  flat = _big_vision_layout(params, stacked=stacked)
  path = str(tmp_path / 'bv.npz')
  np.savez(path, **flat)
  loaded = checkpoint.load_npz(path)
  inferred = big_vision.model_config(loaded)
  for field in ('patches', 'hidden_size', 'classifier', 'posemb',
                'representation_size'):
    assert inferred[field] == config[field], field
  assert inferred.transformer.num_heads == 2
  if 'cls' in flat and 'pos_embedding' in flat:
    # The class token's row is zero: big_vision adds it no embedding.
    posemb = loaded['Transformer']['posembed_input']['pos_embedding']
    assert posemb.shape == (1, 17, 16) and not posemb[0, 0].any()
  np.testing.assert_allclose(
      models.create(inferred, 5).apply({'params': loaded}, IMAGES,
                                       train=False),
      model.apply({'params': params}, IMAGES, train=False), atol=2e-6)


def test_old_big_vision_layouts(tmp_path):
  """Pre-2022 files: posemb under Transformer/ with the class token's row
  (added after it); MAP params inlined at the top level (ViT-G era)."""
  _, model, params = _random_model(classifier='token')
  flat = {'/'.join(k): v for k, v in
          flax.traverse_util.flatten_dict(params).items()}
  flat['Transformer/pos_embedding'] = flat.pop(
      'Transformer/posembed_input/pos_embedding')
  np.savez(tmp_path / 'old.npz', **flat)
  loaded = checkpoint.load_npz(str(tmp_path / 'old.npz'))
  np.testing.assert_array_equal(
      loaded['Transformer']['posembed_input']['pos_embedding'],
      params['Transformer']['posembed_input']['pos_embedding'])

  _, _, map_params = _random_model(classifier='map')
  flat = {'/'.join(k): v for k, v in
          flax.traverse_util.flatten_dict(map_params).items()}
  flat = {k.removeprefix('MAPHead_0/'): v for k, v in flat.items()}
  np.savez(tmp_path / 'inline.npz', **flat)
  loaded = checkpoint.load_npz(str(tmp_path / 'inline.npz'))
  jax.tree.map(np.testing.assert_array_equal, loaded['MAPHead_0'],
               map_params['MAPHead_0'])


def test_vit_jax_files_are_not_converted(reference):
  ref_dir, cases = reference
  flat = np.load(ref_dir / cases['vit_s16_2blocks']['checkpoint'])
  assert not big_vision.is_big_vision(flat)


@pytest.mark.parametrize('classifier', ['token', 'map'])
def test_fine_tune_from_big_vision_file(tmp_path, classifier):
  """As from a vit_jax file: posemb resized (class token's row kept apart),
  pre_logits dropped, a new head."""
  config, _, params = _random_model(classifier=classifier,
                                    representation_size=12)
  path = str(tmp_path / 'bv.npz')
  np.savez(path, **_big_vision_layout(params))
  new_config = tiny_config(classifier=classifier)
  model = models.create(new_config, 7)
  # The head and the shapes are all it gives: zeros.
  init = zero_params(model, (1, 48, 48, 3))
  tuned = checkpoint.load_pretrained(pretrained_path=path, init_params=init,
                                     model_config=new_config)
  assert 'pre_logits' not in tuned
  assert tuned['head']['kernel'].shape == (16, 7)
  posemb = tuned['Transformer']['posembed_input']['pos_embedding']
  prefix = int(classifier == 'token')
  assert posemb.shape == (1, prefix + 36, 16)
  if prefix:
    assert not posemb[0, 0].any()
  old = params['Transformer']['posembed_input']['pos_embedding']
  np.testing.assert_allclose(
      posemb, checkpoint.interpolate_posemb(
          np.concatenate([np.zeros_like(old[:, :1]), old[:, 1:]], 1)
          if prefix else old, 1 + 36 if prefix else 36,
          num_prefix_tokens=prefix), atol=1e-6)
  if classifier == 'map':
    jax.tree.map(np.testing.assert_allclose, tuned['MAPHead_0'],
                 params['MAPHead_0'])


def test_config_from_kwargs():
  config = big_vision.config_from_kwargs(
      dict(variant='S/16', pool_type='tok', rep_size=True,
           posemb='sincos2d', head_zeroinit=False))
  assert (config.hidden_size, config.transformer.num_layers,
          config.transformer.mlp_dim, config.transformer.num_heads) == (
              384, 12, 1536, 6)
  assert config.patches.size == (16, 16)
  assert (config.classifier, config.posemb, config.representation_size,
          config.head_zeroinit) == ('token', 'sincos2d', 384, False)
  with pytest.raises(ValueError, match="pool_type='0'"):
    big_vision.config_from_kwargs(dict(pool_type='0'))
  with pytest.raises(ValueError, match='fancy'):
    big_vision.config_from_kwargs(dict(fancy=1))


def test_main_fine_tunes_from_big_vision_file(tmp_path, image_folder,
                                              reference):
  """configs/finetune.py:model=FILE.npz takes the model the file describes;
  at 64 px the 8x8 posemb grid of the 128 px file is resized to 4x4 (in
  this process)."""
  ref_dir, cases = reference
  path = ref_dir / cases['bv_s16_map']['checkpoint']
  train_in_process(tmp_path, image_folder, f'--config.pretrained_path={path}',
                   '--config.batch_size=4', '--config.eval_batch_size=8',
                   '--config.lr.warmup_steps=1', '--config.ema_decay=0.5',
                   '--config.optimizer.layer_decay=0.75',
                   config=f'configs/finetune.py:model={path},image_size=64,'
                   'steps=2')
  params = checkpoint.load_npz(str(tmp_path / 'params.npz'))
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 16, 384)
  assert params['head']['kernel'].shape == (384, 3)
  assert 'MAPHead_0' in params
  assert read_records(tmp_path)[-1]['eval/num_examples'] == 21


def test_params_subtree_and_bfloat16(tmp_path):
  """Files with optimizer state: the `params/` subtree; bfloat16 arrays
  (stored by np.savez as 2-byte void) come back as float32."""
  _, model, params = _random_model(classifier='gap', posemb='sincos2d')
  flat = {f'params/{k}': v for k, v in _big_vision_layout(params).items()}
  kernel = flat['params/head/kernel'].astype(jnp.bfloat16)
  flat['params/head/kernel'] = kernel.view(np.dtype('V2'))
  flat['opt/state/mu/head/kernel'] = np.zeros(3)
  np.savez(tmp_path / 'state.npz', **flat)
  loaded = checkpoint.load_npz(str(tmp_path / 'state.npz'))
  assert loaded['head']['kernel'].dtype == np.float32
  np.testing.assert_array_equal(loaded['head']['kernel'],
                                kernel.astype(np.float32))
  assert 'opt' not in loaded
  np.testing.assert_array_equal(loaded['embedding']['kernel'],
                                params['embedding']['kernel'])
