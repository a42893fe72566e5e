"""RandAugment's ops against PIL, Mixup / CutMix, determinism and resume."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image, ImageEnhance, ImageOps
import pytest
import tensorflow as tf

from configs import testing
from tests.conftest import data_config, read_records, take
from vit_jax.data import input_pipeline
from vit_jax.data import mixup
from vit_jax.data import randaugment
from vit_jax.data import sources
from vit_jax.train import tasks

_GREY = 128


def _image(channels):
  """20x24 noise with a high-contrast patch: every op changes it."""
  rng = np.random.RandomState(0)
  image = rng.randint(30, 220, (20, 24, 3)).astype(np.uint8)
  image[5:15, 6:18] = rng.randint(0, 256, (10, 12, 3))
  return image if channels == 3 else image[..., :1]


def _ours(name, image, magnitude, sign=0.9, centre=(0.3, 0.6)):
  uniforms = np.array([[0, sign, *centre]], np.float32)
  out = randaugment.apply_op(name, tf.constant(image[None]),
                             tf.constant(uniforms), magnitude)
  return out[0].numpy()


def _pil_reference(name, pil, magnitude, sign):
  """PIL's result for `name` at `magnitude` (AutoAugment's arguments)."""
  v = magnitude / 10
  fill = _GREY if pil.mode == 'L' else (_GREY,) * 3
  signed = 1 if sign >= 0.5 else -1
  affine = lambda *m: pil.transform(pil.size, Image.AFFINE, m, fillcolor=fill)
  width, height = pil.size
  enhance = {'Color': ImageEnhance.Color, 'Contrast': ImageEnhance.Contrast,
             'Brightness': ImageEnhance.Brightness,
             'Sharpness': ImageEnhance.Sharpness}
  if name in enhance:
    return enhance[name](pil).enhance(0.1 + 1.8 * v)
  if name == 'Posterize':  # PIL refuses 0 bits; its table gives all zeros.
    bits = int(4 * v)
    return ImageOps.posterize(pil, bits) if bits else pil.point(lambda _: 0)
  return {
      'AutoContrast': lambda: ImageOps.autocontrast(pil),
      'Equalize': lambda: ImageOps.equalize(pil),
      'Invert': lambda: ImageOps.invert(pil),
      'Solarize': lambda: ImageOps.solarize(pil, int(256 * v)),
      'Rotate': lambda: pil.rotate(signed * 30 * v, fillcolor=fill),
      'ShearX': lambda: affine(1, signed * 0.3 * v, 0, 0, 1, 0),
      'ShearY': lambda: affine(1, 0, 0, signed * 0.3 * v, 1, 0),
      'TranslateX': lambda: affine(1, 0, signed * 100 / 224 * width * v, 0, 1,
                                   0),
      'TranslateY': lambda: affine(1, 0, 0, 0, 1,
                                   signed * 100 / 224 * height * v),
  }[name]()


_PIL_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Posterize', 'Solarize',
            'Color', 'Contrast', 'Brightness', 'Sharpness', 'Rotate', 'ShearX',
            'ShearY', 'TranslateX', 'TranslateY')
_GEOMETRIC = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')


@pytest.mark.parametrize('channels', [3, 1])
@pytest.mark.parametrize('magnitude', [0, 3, 10])
@pytest.mark.parametrize('name', _PIL_OPS)
def test_op_matches_pil(name, magnitude, channels):
  image = _image(channels)
  pil = Image.fromarray(image if channels == 3 else image[..., 0])
  for sign in ((0.1, 0.9) if name in _GEOMETRIC else (0.9,)):
    ours = _ours(name, image, magnitude, sign)
    reference = np.asarray(_pil_reference(name, pil, magnitude, sign))
    reference = reference.reshape(image.shape)
    assert ours.dtype == np.uint8 and ours.shape == image.shape
    if name in _GEOMETRIC:
      # Nearest-pixel sampling: a point on a pixel border may round either
      # way in float32 (none did here), so allow 1% of the pixels.
      assert np.mean(ours != reference) <= 0.01, (name, sign)
    else:
      np.testing.assert_array_equal(ours, reference, err_msg=name)


@pytest.mark.parametrize('name', _GEOMETRIC + ('Posterize', 'Solarize',
                                               'SolarizeAdd', 'Cutout',
                                               'Sharpness'))
def test_magnitude_matters(name):
  """At magnitude 7 the op changes the test image (the PIL comparison above
  would otherwise hold for an op that does nothing). Not 10: there
  Solarize's threshold is 256, the identity."""
  image = _image(3)
  assert np.mean(_ours(name, image, 7) != image) > 0.02


@pytest.mark.parametrize('name', _GEOMETRIC + ('SolarizeAdd', 'Cutout'))
def test_identity_at_magnitude_zero(name):
  for channels in (3, 1):
    image = _image(channels)
    np.testing.assert_array_equal(_ours(name, image, 0), image)


def test_solarize_add_and_cutout():
  image = _image(3)
  out = _ours('SolarizeAdd', image, 10).astype(int)
  low = image < 128
  np.testing.assert_array_equal(out[low], np.minimum(image[low] + 110, 255))
  np.testing.assert_array_equal(out[~low], image[~low])
  # Cutout at 56 px, magnitude 10: a 20x20 grey square (40 px at 224 px,
  # scaled), centred at pixel (28, 14) of uniforms (0.5, 0.25).
  big = np.zeros((56, 56, 3), np.uint8)
  out = _ours('Cutout', big, 10, centre=(0.5, 0.25))
  expected = big.copy()
  expected[18:38, 4:24] = _GREY
  np.testing.assert_array_equal(out, expected)
  # Clipped at the border: the centre at (0, 0) leaves a 10x10 corner.
  out = _ours('Cutout', big, 10, centre=(0.0, 0.0))
  assert (out == _GREY).all(-1).sum() == 100 and (out[:10, :10] == _GREY).all()


def test_randaugment_ranges_and_determinism():
  rng = np.random.RandomState(1)
  images = tf.constant(rng.randint(0, 256, (64, 12, 10, 3)).astype(np.uint8))
  uniforms = rng.uniform(size=(64, 3 * randaugment.UNIFORMS_PER_LAYER))
  uniforms = tf.constant(uniforms.astype(np.float32))
  out = randaugment.randaugment(images, uniforms, 3, 10).numpy()
  assert out.dtype == np.uint8 and out.shape == (64, 12, 10, 3)
  np.testing.assert_array_equal(
      out, randaugment.randaugment(images, uniforms, 3, 10).numpy())
  # Each image depends on its own numbers only, not on its batch.
  np.testing.assert_array_equal(
      out[5:6], randaugment.randaugment(images[5:6], uniforms[5:6], 3,
                                        10).numpy())
  # Layer by layer, each image gets the op its first uniform picks.
  one = randaugment.randaugment(images, uniforms[:, :4], 1, 10).numpy()
  for i in (0, 17, 40):
    name = randaugment.OPS[int(uniforms[i, 0] * len(randaugment.OPS))]
    np.testing.assert_array_equal(
        one[i], randaugment.apply_op(name, images[i:i + 1],
                                     uniforms[i:i + 1, :4], 10)[0].numpy())
  # Float input (resized images) is rounded first; 0 layers: just rounding.
  floats = tf.cast(images, tf.float32) + 0.3
  np.testing.assert_array_equal(
      randaugment.randaugment(floats, uniforms, 0, 10).numpy(),
      images.numpy())


def _constant_source(count=40):
  """`count` copies of one image: any difference is the augmentation's."""
  image = _image(3)[None]
  return sources.Source(
      3, count, lambda i: {'image': np.repeat(image, len(i), 0),
                           'label': np.zeros(len(i), np.int32)})


def _pipeline_config(randaug=(2, 10)):
  return data_config(image_size=20, batch_size=8, pp=dict(randaug=randaug))


def test_pipeline_randaug_is_a_function_of_seed_and_position():
  source = _constant_source()
  config = _pipeline_config()
  first = take(input_pipeline.train_iterator(config, start_step=0,
                                             source=source), 4)
  images = np.concatenate([b['image'] for b in first])
  # Different positions, different augmentations (of the same image).
  assert len({x.tobytes() for x in images}) > 20
  # A resumed stream and each process's slice repeat the global batches.
  resumed = take(input_pipeline.train_iterator(config, start_step=2,
                                               source=source), 2)
  for a, b in zip(first[2:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
  halves = [take(input_pipeline.train_iterator(
      config, start_step=1, process_index=p, process_count=2, source=source),
                 1)[0]['image'] for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), first[1]['image'])
  # Another seed, other augmentations; off: every copy is the same image.
  config.seed = 1
  other = take(input_pipeline.train_iterator(config, start_step=0,
                                             source=source), 1)[0]['image']
  assert not np.array_equal(other, first[0]['image'])
  off = take(input_pipeline.train_iterator(_pipeline_config(None),
                                           start_step=0, source=source),
             1)[0]['image']
  assert (off == off[0]).all()


@pytest.mark.parametrize('randaug', [(2, 11), (-1, 5), (2,), 'strong',
                                     (2.5, 10)])
def test_bad_randaug_is_rejected(randaug):
  with pytest.raises(ValueError, match='config.pp.randaug'):
    input_pipeline.check_config(_pipeline_config(randaug))


@pytest.mark.parametrize('field', ['mixup', 'cutmix'])
def test_bad_mixing_concentration_is_rejected(field):
  config = ml_collections.ConfigDict({field: {'p': -0.2}})
  with pytest.raises(ValueError, match=f'config.{field}.p=-0.2'):
    mixup.check(config)
  config[field].p = float('nan')
  with pytest.raises(ValueError, match=f'config.{field}.p=nan'):
    mixup.check(config)


def _labelled_batch(n=8, size=6, classes=5):
  """Example i: an image of constant value i + 1 and label i % classes."""
  images = jnp.broadcast_to(jnp.arange(1.0, n + 1)[:, None, None, None],
                            (n, size, size, 3))
  return images, jax.nn.one_hot(jnp.arange(n) % classes, classes)


def test_mixup_mixes_images_and_labels_by_one_ratio():
  images, targets = _labelled_batch()
  mixed, soft = mixup.mixup(jax.random.PRNGKey(3), images, targets, 0.2)
  np.testing.assert_allclose(soft.sum(-1), 1, rtol=1e-6)
  ratio = float(soft[0, 0])  # Example 0 (label 0) with example 7 (label 2).
  assert 0 < ratio < 1 and soft[0, 2] == pytest.approx(1 - ratio)
  partner = np.roll(np.arange(1.0, 9), 1)
  np.testing.assert_allclose(mixed[:, 0, 0, 0],
                             ratio * np.arange(1.0, 9) + (1 - ratio) * partner,
                             rtol=1e-6)
  again, _ = mixup.mixup(jax.random.PRNGKey(3), images, targets, 0.2)
  np.testing.assert_array_equal(mixed, again)


def test_mixup_ratio_follows_beta():
  images, targets = _labelled_batch(n=2, size=1)
  ratios = np.array([float(mixup.mixup(jax.random.PRNGKey(k), images, targets,
                                       1.0)[1][0, 0]) for k in range(300)])
  # Beta(1, 1) is uniform on [0, 1]: mean 1/2, variance 1/12.
  assert abs(ratios.mean() - 0.5) < 0.05 and abs(ratios.var() - 1 / 12) < 0.02


def test_cutmix_labels_match_pasted_area():
  images, targets = _labelled_batch(size=32)
  for key in range(5):
    mixed, soft = mixup.cutmix(jax.random.PRNGKey(key), images, targets, 1.0)
    np.testing.assert_allclose(soft.sum(-1), 1, rtol=1e-6)
    kept = np.mean(np.asarray(mixed[0, :, :, 0]) == 1.0)  # Example 0's own.
    assert np.all((mixed[0] == 1.0) | (mixed[0] == 8.0))
    assert soft[0, 0] == pytest.approx(kept, abs=1e-6)
    assert soft[0, 2] == pytest.approx(1 - kept, abs=1e-6)
    # One box for the whole batch.
    np.testing.assert_array_equal(mixed[3] == 4.0, mixed[0] == 1.0)


def test_mix_batch_with_both_picks_one_per_step():
  config = ml_collections.ConfigDict(dict(mixup={'p': 0.2},
                                          cutmix={'p': 1.0}))
  images, targets = _labelled_batch(size=16)
  mix = jax.jit(lambda r, i, t: mixup.mix_batch(config, r, i, t))
  kinds = set()
  for step in range(12):
    mixed, soft = mix(jax.random.fold_in(jax.random.PRNGKey(0), step), images,
                      targets)
    np.testing.assert_allclose(soft.sum(-1), 1, rtol=1e-6)
    values = np.unique(np.asarray(mixed[0]))
    kinds.add('cutmix' if set(values) <= {1.0, 8.0} else 'mixup')
  assert kinds == {'mixup', 'cutmix'}


def test_main_rejects_bad_augmentation_before_compiling(tmp_path,
                                                        image_folder):
  """The trainer main.py calls refuses a bad Mixup setting before it writes
  or compiles anything (main.py prints such a ValueError as its one
  `error:` line: test_reliability.py)."""
  config = testing.get_config()
  config.update(dataset='imagefolder', data_dir=str(image_folder))
  config.mixup.p = -1
  with pytest.raises(ValueError, match=r'^config\.mixup\.p=-1'):
    tasks.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


def test_two_processes_augment_as_one(two_process_run, two_device_run):
  """RandAugment per example and Mixup / CutMix over the global batch: two
  processes (1 device each) train as one process on 2 devices. (Mixing
  within each process's half would pair other examples: other losses.)
  Resuming such a run: test_preemption's two-process test."""
  config = json.loads((two_process_run / 'config.json').read_text())
  assert config['pp']['randaug'] == [2, 10]
  assert config['mixup']['p'] > 0 and config['cutmix']['p'] > 0
  losses = [[r['train/loss'] for r in read_records(d) if 'train/loss' in r]
            for d in (two_device_run, two_process_run)]
  assert len(losses[0]) == 40
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
