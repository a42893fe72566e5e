"""SigLIP: the two-tower model against big_vision, its files, configs, presets."""
import json
import os
import pathlib
import subprocess

import flax
import jax
import numpy as np
from PIL import Image
import pytest
import safetensors.numpy

from tests.conftest import ROOT, python_command, zero_params
from tests.test_hub import offline_cache  # pylint: disable=unused-import
from tests.test_hub import write_repo
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.configs import models as models_config
from vit_jax.models import two_towers


def _case(reference):
  ref_dir, cases = reference
  if 'siglip_bv_tiny' not in cases:
    pytest.skip('No siglip_bv_tiny case in the reference.')
  return ref_dir, cases['siglip_bv_tiny']


def test_reference_case(reference):
  """big_vision's two_towers.Model: the released layout (`params/...`)."""
  ref_dir, case = _case(reference)
  config = models_config.from_big_vision_two_towers(**case['big_vision_kwargs'])
  model = models.create(config)
  assert isinstance(model, models.TwoTowerModel)
  params = checkpoint.load_npz(str(ref_dir / case['checkpoint']))
  zimg, ztxt, out = jax.jit(lambda p: model.apply(
      {'params': p}, images=np.load(ref_dir / case['images']),
      tokens=np.load(ref_dir / case['tokens'])))(params)
  np.testing.assert_allclose(zimg, np.load(ref_dir / case['zimg']),
                             atol=2e-5, rtol=0)
  np.testing.assert_allclose(ztxt, np.load(ref_dir / case['ztxt']),
                             atol=2e-5, rtol=0)
  np.testing.assert_allclose(out['t'], [case['t']], rtol=1e-6)
  np.testing.assert_allclose(out['b'], [case['b']], rtol=1e-6)


def test_reference_case_without_params_prefix(reference, tmp_path):
  """Files saved from a model alone have no `params/` prefix."""
  ref_dir, case = _case(reference)
  with np.load(ref_dir / case['checkpoint']) as npz:
    bare = {k.removeprefix('params/'): npz[k] for k in npz.files}
  assert 'img/pos_embedding' in bare and 'b' in bare
  np.savez(tmp_path / 'bare.npz', **bare)
  want = flax.traverse_util.flatten_dict(
      checkpoint.load_npz(str(ref_dir / case['checkpoint'])))
  got = flax.traverse_util.flatten_dict(
      checkpoint.load_npz(str(tmp_path / 'bare.npz')))
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k])


def test_from_big_vision_two_towers_fields():
  config = models_config.from_big_vision_two_towers(
      image=dict(variant='So400m/14', pool_type='map', scan=True),
      text=dict(variant='So400m', vocab_size=32_000, scan=True),
      out_dim=[None, 1152], bias_init=-10, temperature_init=10)
  assert config.image.hidden_size == 1152
  assert config.image.transformer.num_layers == 27
  assert config.image.transformer.mlp_dim == 4304
  assert tuple(config.image.patches.size) == (14, 14)
  assert config.image.classifier == 'map'
  assert config.text.to_dict() == dict(width=1152, num_layers=27, mlp_dim=4304,
                             num_heads=16, dropout_rate=0.0,
                             vocab_size=32_000, pool_type='last')
  assert config.out_dim == (None, 1152)
  # big_vision's text tower defaults to mlp_dim 2048 (None: 4 * width), its
  # ViT to 4 * width.
  small = models_config.from_big_vision_two_towers(
      image=dict(width=16), text=dict(width=16))
  assert small.text.mlp_dim == 2048 and small.image.transformer.mlp_dim == 64
  assert models_config.from_big_vision_two_towers(
      text=dict(width=16, mlp_dim=None)).text.mlp_dim == 64
  assert config.temperature_init == 10 and config.bias_init == -10
  with pytest.raises(ValueError, match='num_classes'):
    models.create(config, 10)
  with pytest.raises(ValueError, match="image_model='vit_x'"):
    models_config.from_big_vision_two_towers(image_model='vit_x')
  with pytest.raises(ValueError, match=r"\['bias'\]"):
    models_config.from_big_vision_two_towers(bias=1.0)
  with pytest.raises(ValueError, match=r"\['depht'\]"):
    models_config.from_big_vision_two_towers(text=dict(depht=2))
  with pytest.raises(ValueError, match="variant 'Q/16'"):
    models_config.from_big_vision_two_towers(image=dict(variant='Q/16'))


def test_init_temperature_bias_and_probabilities():
  config = models_config.from_big_vision_two_towers(
      image=dict(variant='mu/8', pool_type='gap', posemb='sincos2d'),
      text=dict(width=16, depth=1, num_heads=2, vocab_size=20),
      out_dim=8, temperature_init=10.0, bias_init=-10.0)
  model = models.create(config)
  images, tokens = np.zeros((3, 16, 16, 3), np.float32), np.ones((2, 5), int)
  params = jax.jit(lambda: model.init(jax.random.key(0), images=images,
                                      tokens=tokens)['params'])()
  assert set(params) == {'img', 'txt', 't', 'b'}
  np.testing.assert_allclose(params['t'], [np.log(10.0)], rtol=1e-6)
  np.testing.assert_allclose(params['b'], [-10.0])
  zimg, ztxt, out = jax.jit(lambda p: model.apply(
      {'params': p}, images=images, tokens=tokens))(params)
  assert zimg.shape == (3, 8) and ztxt.shape == (2, 8)
  np.testing.assert_allclose(out['t'], [10.0], rtol=1e-6)
  probs = two_towers.pairwise_probabilities(zimg, ztxt, out)
  want = 1 / (1 + np.exp(-(10 * np.asarray(zimg) @ np.asarray(ztxt).T - 10)))
  np.testing.assert_allclose(probs, want, rtol=1e-5)
  del out['b']  # LiT: a softmax over the texts.
  np.testing.assert_allclose(
      two_towers.pairwise_probabilities(zimg, ztxt, out).sum(1), 1, rtol=1e-6)


DATA = pathlib.Path(__file__).parent / 'data' / 'siglip'
BV_CASES = json.loads((DATA / 'cases.json').read_text())


@pytest.mark.parametrize('name', sorted(BV_CASES))
def test_big_vision_two_towers_cases(name, tmp_path):
  """Made by big_vision's own two_towers.Model (make_big_vision_cases.py):
  MAP + bias with scanned towers, GAP + sin-cos with heads and no bias, a
  class token with pre-logits. Loaded from the released layout, then saved
  by us and loaded again: the same embeddings, t and b."""
  path = DATA / f'{name}.npz'
  model = models.create(
      models_config.from_big_vision_two_towers(**BV_CASES[name]))
  with np.load(path) as npz:
    ref = {k: npz[k] for k in npz.files if not k.startswith('params/')}
  params = checkpoint.load_npz(str(path))
  checkpoint.save_npz(str(tmp_path / 'ours.npz'), params)
  apply = jax.jit(lambda p: model.apply({'params': p},
                                        images=ref['input/images'],
                                        tokens=ref['input/tokens']))
  for loaded in (params, checkpoint.load_npz(str(tmp_path / 'ours.npz'))):
    zimg, ztxt, out = apply(loaded)
    np.testing.assert_allclose(zimg, ref['out/zimg'], atol=2e-5, rtol=0)
    np.testing.assert_allclose(ztxt, ref['out/ztxt'], atol=2e-5, rtol=0)
    np.testing.assert_allclose(out['t'], ref['out/t'], rtol=1e-6)
    assert ('b' in out) == ('out/b' in ref)
    if 'b' in out:
      np.testing.assert_allclose(out['b'], ref['out/b'], rtol=1e-6)


# transformers' SiglipModel. hf_tiny/ and hf_tiny_refs.npz were written by
# make_transformers_case.py (transformers 5.25.0): a tiny SiglipModel with
# random weights, saved with save_pretrained, and its embeddings.
HF_REPO = DATA / 'hf_tiny'


def _hf_refs():
  return dict(np.load(DATA / 'hf_tiny_refs.npz'))


def _check_hf_embeddings(config, params, refs):
  zimg, ztxt, out = jax.jit(lambda p: models.create(config).apply(
      {'params': p}, images=refs['images'], tokens=refs['tokens']))(params)
  np.testing.assert_allclose(zimg, refs['image_embeds'], atol=2e-5, rtol=0)
  np.testing.assert_allclose(ztxt, refs['text_embeds'], atol=2e-5, rtol=0)
  np.testing.assert_allclose(np.log(out['t']), refs['logit_scale'],
                             rtol=1e-6)
  np.testing.assert_allclose(out['b'], refs['logit_bias'], rtol=1e-6)


def test_transformers_siglip_loads(offline_cache):
  path = str(HF_REPO / 'model.safetensors')
  config = checkpoint.safetensors_model_config(path)
  assert config.image.classifier == 'map' and config.out_dim == (None, 16)
  assert config.image.transformer.num_heads == 4
  assert config.text.num_heads == 2 and config.text.vocab_size == 32
  assert config.pp.size == 16 and config.pp.max_len == 8
  _check_hf_embeddings(config, checkpoint.load_safetensors(path), _hf_refs())
  # The same repository as a hub name, offline from a hub cache.
  write_repo(offline_cache, 'google/siglip-base-patch16-224', {
      name: (HF_REPO / name).read_bytes()
      for name in ('model.safetensors', 'config.json')})
  name = 'hf-hub:google/siglip-base-patch16-224'
  hub_config = checkpoint.safetensors_model_config(name)
  assert hub_config.image.to_dict() == config.image.to_dict()
  _check_hf_embeddings(hub_config, checkpoint.load_params(name, hub_config),
                       _hf_refs())


def test_transformers_siglip_round_trip(tmp_path):
  """Written back, every tensor and the config fields are the original's."""
  path = str(HF_REPO / 'model.safetensors')
  config = checkpoint.safetensors_model_config(path)
  out = tmp_path / 'model.safetensors'
  checkpoint.save_safetensors(str(out), checkpoint.load_safetensors(path),
                              config, layout='transformers')
  want = safetensors.numpy.load_file(path)
  got = safetensors.numpy.load_file(str(out))
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  written = json.loads((tmp_path / 'config.json').read_text())
  original = json.loads((HF_REPO / 'config.json').read_text())
  for tower in ('text_config', 'vision_config'):
    for key, value in original[tower].items():
      assert written[tower][key] == value, (tower, key)
  assert written['model_type'] == 'siglip'


def test_big_vision_siglip_exports_to_transformers(reference, tmp_path):
  """big_vision's file -> SiglipModel layout -> back: big_vision's numbers.
  (transformers itself loads this export strictly and gives big_vision's
  embeddings within 2.4e-7: make_transformers_case.py's check, README.)"""
  ref_dir, case = _case(reference)
  config = models_config.from_big_vision_two_towers(**case['big_vision_kwargs'])
  out = tmp_path / 'model.safetensors'
  checkpoint.save_safetensors(
      str(out), checkpoint.load_npz(str(ref_dir / case['checkpoint'])),
      config, layout='transformers')
  hub_config = json.loads((tmp_path / 'config.json').read_text())
  assert hub_config['vision_config']['image_size'] == 16
  assert hub_config['text_config']['max_position_embeddings'] == 8
  loaded = checkpoint.safetensors_model_config(str(out))
  images, tokens = (np.load(ref_dir / case[k]) for k in ('images', 'tokens'))
  zimg, ztxt, res = jax.jit(lambda p: models.create(loaded).apply(
      {'params': p}, images=images, tokens=tokens))(
          checkpoint.load_safetensors(str(out)))
  np.testing.assert_allclose(zimg, np.load(ref_dir / case['zimg']), atol=2e-5)
  np.testing.assert_allclose(ztxt, np.load(ref_dir / case['ztxt']), atol=2e-5)
  np.testing.assert_allclose(res['b'], [case['b']], rtol=1e-6)


def test_transformers_export_errors(tmp_path):
  config = models_config.from_big_vision_two_towers(**BV_CASES['bv_gap_sincos'])
  params = checkpoint.load_npz(str(DATA / 'bv_gap_sincos.npz'))
  with pytest.raises(ValueError, match="classifier='map'.*no image "
                     'projection.*a bias b'):
    checkpoint.save_safetensors(str(tmp_path / 'm.safetensors'), params,
                                config, layout='transformers')
  with pytest.raises(ValueError, match="layout='transformers'"):
    checkpoint.save_safetensors(str(tmp_path / 'm.safetensors'), params,
                                config, layout='timm')
  assert not list(tmp_path.iterdir())


def test_transformers_siglip_position_ids_buffers_are_ignored(tmp_path):
  """Files of older transformers versions hold int64 `position_ids`."""
  tensors = safetensors.numpy.load_file(str(HF_REPO / 'model.safetensors'))
  for tower, n in (('vision', 16), ('text', 8)):
    tensors[f'{tower}_model.embeddings.position_ids'] = np.arange(
        n, dtype=np.int64)[None]
  (tmp_path / 'model.safetensors').write_bytes(safetensors.numpy.save(tensors))
  (tmp_path / 'config.json').write_bytes((HF_REPO / 'config.json').read_bytes())
  path = str(tmp_path / 'model.safetensors')
  _check_hf_embeddings(checkpoint.safetensors_model_config(path),
                       checkpoint.load_safetensors(path), _hf_refs())


def test_transformers_siglip_mismatches(tmp_path):
  tensors = safetensors.numpy.load_file(str(HF_REPO / 'model.safetensors'))
  del tensors['vision_model.head.probe']
  tensors['vision_model.extra.weight'] = np.zeros(2, np.float32)
  (tmp_path / 'model.safetensors').write_bytes(safetensors.numpy.save(tensors))
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match='extra.weight.*\n.*missing keys: vision_model.head'
                     '.probe'):
    checkpoint.load_safetensors(str(tmp_path / 'model.safetensors'))
  config = checkpoint.safetensors_model_config(
      str(HF_REPO / 'model.safetensors'))
  config.text.num_layers = 3
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match='model.text.num_layers=3, the checkpoint: 2'):
    checkpoint.load_safetensors(str(HF_REPO / 'model.safetensors'), config)


def _tiny_spm(path, vocab_size=32):
  """A SentencePiece model with T5's special ids (pad 0, EOS 1, unk 2, no
  BOS), as SigLIP's c4_en tokenizer has them; few enough pieces for the
  hf_tiny text tower."""
  import io  # pylint: disable=g-import-not-at-top
  import sentencepiece  # pylint: disable=g-import-not-at-top
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(['a photo of a dog', 'a photo of a cat',
                              'a car', 'this is a photo of the bag'] * 20),
      model_writer=model, vocab_size=vocab_size, model_type='char',
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
      minloglevel=2)
  path.write_bytes(model.getvalue())


def test_siglip_tokenizer_lower_sticky_eos_pad(tmp_path):
  from vit_jax.models import lit  # pylint: disable=g-import-not-at-top
  _tiny_spm(tmp_path / 'spiece.model')
  config = dict(text_model='text_transformer', text=dict(vocab_size=32),
                pp=dict(tokenizer_name='sentencepiece', max_len=10,
                        lower=True, pad_value=1))
  tok = lit.get_tokenizer(config, str(tmp_path / 'spiece.model'))
  lower, upper, long = tok(['a cat', 'A CAT', 'a photo of a dog'])
  np.testing.assert_array_equal(lower, upper)  # Lower-cased first.
  assert lower[-1] == 1 and long[-1] == 1  # Sticky EOS at the end.
  # 'a cat': 6 pieces and EOS, then 3 more EOS as padding.
  assert list(lower).count(1) == 4 and lower[6] == 1 and 1 not in lower[:6]
  # SigLIP 2: padded with the pad id (0); EOS stays only where a text is cut.
  tok2 = lit.get_tokenizer({**config, 'pp': {**config['pp'], 'pad_value': 0}},
                           str(tmp_path / 'spiece.model'))
  short, cut = tok2(['a cat', 'a photo of a dog'])
  assert short[-1] == 0 and 1 in short and cut[-1] == 1
  np.testing.assert_array_equal(cut, long)
  with pytest.raises(ValueError, match='pad_value=99 is not a token id'):
    lit.get_tokenizer({**config, 'pp': {**config['pp'], 'pad_value': 99}},
                      str(tmp_path / 'spiece.model'))


def test_zeroshot_cli_prints_sigmoid_probabilities(offline_cache, tmp_path):
  """`python -m vit_jax.zeroshot --checkpoint=hf-hub:... --labels=...`: a
  transformers SigLIP repository (weights, config.json, spiece.model) from
  an offline hub cache; every label's sigmoid(t z.z + b)."""
  from vit_jax import inference  # pylint: disable=g-import-not-at-top
  from vit_jax.evaluators import zeroshot  # pylint: disable=g-import-not-at-top
  _tiny_spm(tmp_path / 'spiece.model')
  write_repo(offline_cache, 'google/siglip-base-patch16-224', {
      'model.safetensors': (HF_REPO / 'model.safetensors').read_bytes(),
      'config.json': (HF_REPO / 'config.json').read_bytes(),
      'spiece.model': (tmp_path / 'spiece.model').read_bytes()})
  rng = np.random.default_rng(0)
  paths = []
  for i in range(2):
    paths.append(str(tmp_path / f'{i}.png'))
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), np.uint8)).save(
        paths[-1])
  name = 'hf-hub:google/siglip-base-patch16-224'
  labels = ['dog', 'cat', 'car']
  run = subprocess.run(
      python_command('-m', 'vit_jax.zeroshot', f'--checkpoint={name}',
       f'--labels={",".join(labels)}', *paths),
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert run.returncode == 0, run.stderr
  printed = [line.split('\t') for line in run.stdout.strip().splitlines()]
  assert [p[0] for p in printed] == paths
  assert [[f.split('=')[0] for f in p[1:]] for p in printed] == [labels] * 2
  got = np.array([[float(f.split('=')[1]) for f in p[1:]] for p in printed])
  model, params, tokenizer, config = inference.load_lit_model(
      checkpoint_path=name)
  classes = zeroshot.class_embeddings(model, params, tokenizer, labels)
  images = np.stack([inference.load_image(p, config.pp.size) for p in paths])
  zimg, _, out = jax.jit(lambda p: model.apply({'params': p},
                                              images=images))(params)
  logits = float(out['t'][0]) * np.asarray(zimg) @ classes.T + float(
      out['b'][0])
  np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), atol=1e-4)


def test_image_tower_fine_tunes_as_a_classifier(offline_cache, tmp_path,
                                                image_folder):
  """configs/finetune.py:model=hf-hub:... takes the SigLIP image tower (MAP
  pooling, no head) into a ViT classifier with a new head; the run exports
  as any classifier's."""
  from vit_jax import export  # pylint: disable=g-import-not-at-top
  from vit_jax.configs import common  # pylint: disable=g-import-not-at-top
  from tests.conftest import train_in_process  # pylint: disable=g-import-not-at-top
  write_repo(offline_cache, 'google/siglip-base-patch16-224', {
      name: (HF_REPO / name).read_bytes()
      for name in ('model.safetensors', 'config.json')})
  name = 'hf-hub:google/siglip-base-patch16-224'
  config = common.model_from_variant(name)
  assert 'text_model' not in config and config.classifier == 'map'
  model = models.create(config, 5)
  init = zero_params(model, (1, 16, 16, 3))
  tuned = checkpoint.load_pretrained(pretrained_path=name, init_params=init,
                                     model_config=config)
  towers = checkpoint.load_safetensors(str(HF_REPO / 'model.safetensors'))
  assert set(tuned) == set(towers['img']) | {'head'}
  jax.tree.map(np.testing.assert_array_equal,
               {k: v for k, v in tuned.items() if k != 'head'}, towers['img'])
  assert tuned['head']['kernel'].shape == (16, 5)
  # Without a head, the classifier's features are the unnormalised SigLIP
  # image embedding.
  refs = _hf_refs()
  features = jax.jit(lambda p, x: models.create(config, None).apply(
      {'params': p}, x, train=False))(towers['img'], refs['images'])
  np.testing.assert_allclose(
      features / np.linalg.norm(features, axis=1, keepdims=True),
      refs['image_embeds'], atol=2e-5)

  workdir = tmp_path / 'run'
  train_in_process(workdir, image_folder, '--config.batch_size=4',
                   '--config.eval_batch_size=8', '--config.lr.warmup_steps=1',
                   config=f'configs/finetune.py:model={name},image_size=16,'
                   'steps=2')
  params = checkpoint.load_npz(str(workdir / 'params.npz'))
  assert params['head']['kernel'].shape == (16, 3) and 'MAPHead_0' in params
  summary = export.export_run(str(workdir), str(tmp_path / 'model.stablehlo'),
                              fmt='stablehlo')
  assert '[N, 16, 16, 3]' in summary and '[N, 3]' in summary, summary


# big_vision's SigLIP colabs build these models with these arguments
# (SigLIP_demo.ipynb, SigLIP2_demo.ipynb): variant, text variant, vocabulary,
# embedding size, text length.
_COLAB = {
    'SigLIP-B_16-224': ('B/16', 'B', 32_000, 768, 64),
    'SigLIP-L_16-384': ('L/16', 'L', 32_000, 1024, 64),
    'SigLIP-So400m_14-224': ('So400m/14', 'So400m', 32_000, 1152, 16),
    'SigLIP-So400m_14-384': ('So400m/14', 'So400m', 32_000, 1152, 64),
    'SigLIP-B_16-i18n-256': ('B/16', 'B', 250_000, 768, 64),
    'SigLIP2-B_32-256': ('B/32', 'B', 256_000, 768, 64),
    'SigLIP2-So400m_16-512': ('So400m/16', 'So400m', 256_000, 1152, 64),
    'SigLIP2-g-opt_16-384': ('g-opt/16', 'So400m', 256_000, 1536, 64),
}


@pytest.mark.parametrize('name', sorted(_COLAB))
def test_presets_are_the_colab_models(name):
  variant, text, vocab, dim, max_len = _COLAB[name]
  preset = models_config.get_model_config(name)
  colab = models_config.from_big_vision_two_towers(
      image=dict(variant=variant, pool_type='map'),
      text=dict(variant=text, vocab_size=vocab), out_dim=(None, dim),
      bias_init=-10.0, temperature_init=10.0)
  for field in ('hidden_size', 'patches', 'transformer', 'classifier',
                'posemb', 'representation_size'):
    default = getattr(models.VisionTransformer, field, None)
    assert preset.image.get(field, default) == colab.image[field], field
  assert preset.text.to_dict() == colab.text.to_dict()
  assert preset.out_dim == colab.out_dim
  assert (preset.temperature_init, preset.bias_init) == (10.0, -10.0)
  assert preset.pp.max_len == max_len and preset.pp.lower
  assert preset.pp.pad_value == (0 if name.startswith('SigLIP2') else 1)
  assert name in models_config.CHECKPOINT_FILES
  with pytest.raises(ValueError, match='image-text model'):
    models.get_model(name, num_classes=10)


def test_pixels_that_fill_no_patch_are_dropped():
  """As big_vision's and transformers' VALID patch convolutions: So400m/14
  at 384 px reads 378 px (checked here on 4 px patches at 18x19 px)."""
  model = models.create(
      models_config.from_big_vision_two_towers(**BV_CASES['bv_gap_sincos']))
  params = checkpoint.load_npz(str(DATA / 'bv_gap_sincos.npz'))
  with np.load(DATA / 'bv_gap_sincos.npz') as npz:
    images, zimg = npz['input/images'], npz['out/zimg']
  larger = np.random.default_rng(0).uniform(-1, 1, (2, 18, 19, 3))
  larger[:, :16, :16] = images
  got, _, _ = jax.jit(lambda p: model.apply({'params': p},
                                           images=larger))(params)
  np.testing.assert_allclose(got, zimg, atol=2e-5)


def test_predict_refuses_an_image_text_model():
  from vit_jax import inference  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='image-text .* vit_jax.zeroshot'):
    inference.load_model(str(HF_REPO / 'model.safetensors'))


def test_image_tower_of_a_big_vision_file_as_a_classifier(reference):
  """`configs/finetune.py:model=FILE.npz` of a big_vision SigLIP: the image
  tower's ViT (MAP, learned posemb), initialised from `img/...`."""
  from vit_jax.configs import common  # pylint: disable=g-import-not-at-top
  ref_dir, case = _case(reference)
  path = str(ref_dir / case['checkpoint'])
  config = common.model_from_variant(path)
  assert config.classifier == 'map' and config.hidden_size == 32
  model = models.create(config, 4)
  init = zero_params(model, (1, 16, 16, 3))
  tuned = checkpoint.load_pretrained(pretrained_path=path, init_params=init,
                                     model_config=config)
  towers = checkpoint.load_npz(path)
  jax.tree.map(np.testing.assert_array_equal,
               {k: v for k, v in tuned.items() if k != 'head'}, towers['img'])
  features = jax.jit(lambda p, x: models.create(config, None).apply(
      {'params': p}, x, train=False))(towers['img'],
                                      np.load(ref_dir / case['images']))
  np.testing.assert_allclose(
      features / np.linalg.norm(features, axis=1, keepdims=True),
      np.load(ref_dir / case['zimg']), atol=2e-5)
