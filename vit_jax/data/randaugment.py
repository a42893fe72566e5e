"""RandAugment (Cubuk et al. 2019) on uint8 image batches, in TensorFlow.

`randaugment(images, uniforms, num_layers, magnitude)` applies `num_layers`
operations to each image of a batch [n, H, W, C] (C: 1 or 3), each chosen
uniformly from `OPS`, all at the same `magnitude` in [0, 10]. Every random
choice comes from `uniforms` (float [n, num_layers * UNIFORMS_PER_LAYER] in
[0, 1)), which the input pipeline derives from (seed, example position), so
an image's augmentation does not depend on its batch or process.

The operation set and the magnitude -> argument mapping are AutoAugment's
as big_vision (and tensorflow_models) use for RandAugment, so `(2, 10)` is
the plain-ViT baseline's and AugReg's setting. The operations compute what
PIL's ImageOps / ImageEnhance / Image.transform(NEAREST) compute on 8-bit
images (tests/test_augment.py compares them with PIL), with one deliberate
difference from big_vision: Contrast blends towards the image's mean grey
level, as PIL does (big_vision's version uses the mean histogram count).

Magnitude -> argument, at magnitude m (v = m / 10):
  Rotate: +-30v degrees; ShearX/Y: +-0.3v; TranslateX/Y: +-(100/224)v of the
  side (big_vision's 100 px at 224 px); the sign is random.
  Posterize: keep int(4v) bits; Solarize: invert values >= int(256v);
  SolarizeAdd: add int(110v) to values < 128.
  Color, Contrast, Brightness, Sharpness: PIL enhance factor 0.1 + 1.8v.
  Cutout: a (2p x 2p) grey square centred at a random pixel, p = int(40v)
  at 224 px (big_vision's), scaled with the shorter side.
  AutoContrast, Equalize, Invert: no argument.
Magnitude 0 leaves an image unchanged for the geometric ops, SolarizeAdd and
Cutout; as in AutoAugment it does not for the enhance ops (factor 0.1),
Posterize (0 bits) and Solarize (threshold 0; at magnitude 10 its threshold
is 256: the identity). Geometric ops and Cutout fill with grey (128), as
big_vision does.
"""
import math

import tensorflow as tf

OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize',
       'Solarize', 'Color', 'Contrast', 'Brightness', 'Sharpness', 'ShearX',
       'ShearY', 'TranslateX', 'TranslateY', 'Cutout', 'SolarizeAdd')
# Per layer: which op, the sign of a signed argument, Cutout's centre (y, x).
UNIFORMS_PER_LAYER = 4
MAX_MAGNITUDE = 10
FILL = 128
_TRANSLATE_FRACTION = 100 / 224
_CUTOUT_AT_224 = 40


def check(randaug) -> None:
  """Raises a ValueError unless `randaug` is None or (num_layers, magnitude)."""
  if randaug is None:
    return
  ok = isinstance(randaug, (tuple, list)) and len(randaug) == 2
  if ok:
    layers, magnitude = randaug
    ok = (isinstance(layers, int) and layers >= 0 and
          isinstance(magnitude, (int, float)) and
          0 <= magnitude <= MAX_MAGNITUDE)
  if not ok:
    raise ValueError(
        f'config.pp.randaug={randaug!r} must be None (off) or (num_layers, '
        f'magnitude): an int >= 0 and a number in [0, {MAX_MAGNITUDE}], '
        'e.g. --config.pp.randaug="(2, 10)".')


def num_uniforms(randaug) -> int:
  """Random numbers per example that `randaugment` reads (0 when off)."""
  return 0 if randaug is None else randaug[0] * UNIFORMS_PER_LAYER


# Helpers on uint8 batches [n, H, W, C].


def _grey(images):
  """PIL's convert('L') (ITU-R 601-2 luma, fixed point), as [n, H, W, 1]."""
  if images.shape[-1] == 1:
    return images
  rgb = tf.cast(images, tf.int32)
  luma = tf.bitwise.right_shift(
      rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000,
      16)
  return tf.cast(luma, tf.uint8)[..., None]


def _blend(degenerate, images, factor: float):
  """PIL's Image.blend(degenerate, images, factor): float32, truncated."""
  low = tf.cast(degenerate, tf.float32)
  out = low + factor * (tf.cast(images, tf.float32) - low)
  return tf.cast(tf.clip_by_value(out, 0, 255), tf.uint8)


def _table_index(images):
  """int32 like `images`: value + 256 * (channel + C * image), the index of
  each pixel's entry in per-channel tables [n, C, 256] laid flat."""
  n, c = tf.shape(images)[0], images.shape[-1]
  table = tf.reshape(tf.range(n * c) * 256, [n, 1, 1, c])
  return tf.cast(images, tf.int32) + table


def _lookup(images, luts):
  """Maps each channel through its table: luts int32 [n, C, 256]."""
  out = tf.gather(tf.reshape(luts, [-1]), _table_index(images))
  return tf.cast(tf.clip_by_value(out, 0, 255), tf.uint8)


def _histograms(images):
  """int32 [n, C, 256]: each channel's histogram."""
  n, c = tf.shape(images)[0], images.shape[-1]
  counts = tf.math.bincount(tf.reshape(_table_index(images), [-1]),
                            minlength=n * c * 256, maxlength=n * c * 256)
  return tf.reshape(counts, [n, c, 256])


def _affine(images, pil_matrices):
  """PIL's Image.transform(AFFINE, matrix, NEAREST, fillcolor=FILL).

  PIL's (a, b, c, d, e, f) maps an output point to the input point (ax + by
  + c, dx + ey + f) in coordinates where pixel i spans [i, i + 1); TF's
  projective transform uses pixel centres at i, hence the half-pixel terms.
  `pil_matrices`: float32 [n, 6].
  """
  a, b, c, d, e, f = tf.unstack(pil_matrices, axis=1)
  c = c + 0.5 * (a + b - 1)
  f = f + 0.5 * (d + e - 1)
  zeros = tf.zeros_like(a)
  transforms = tf.stack([a, b, c, d, e, f, zeros, zeros], axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms,
      output_shape=tf.shape(images)[1:3], fill_value=float(FILL),
      interpolation='NEAREST', fill_mode='CONSTANT')


# The operations: (images uint8 [n, H, W, C], uniforms [n, 4], v) -> images.
# v = magnitude / 10; uniforms[:, 1] < 0.5 negates a signed argument.


def _signed(uniforms, value):
  return tf.where(uniforms[:, 1] < 0.5, -value, value)


def autocontrast(images, *_):
  """PIL's ImageOps.autocontrast: each channel stretched to [0, 255]."""
  hist = _histograms(images) > 0
  values = tf.range(256)
  lo = tf.reduce_min(tf.where(hist, values, 256), axis=-1, keepdims=True)
  hi = tf.reduce_max(tf.where(hist, values, -1), axis=-1, keepdims=True)
  # PIL computes the table in Python floats (float64) and truncates.
  scale = 255.0 / tf.cast(tf.maximum(hi - lo, 1), tf.float64)
  stretched = tf.cast(values - lo, tf.float64) * scale
  luts = tf.where(hi > lo, tf.cast(stretched, tf.int32), values)
  return _lookup(images, luts)


def equalize(images, *_):
  """PIL's ImageOps.equalize: each channel's histogram made flat."""
  hist = _histograms(images)
  last = tf.reduce_max(tf.where(hist > 0, tf.range(256), 0), axis=-1,
                       keepdims=True)
  step = (tf.reduce_sum(hist, -1, keepdims=True) -
          tf.gather(hist, last, batch_dims=2)) // 255
  before = tf.cumsum(hist, axis=-1, exclusive=True)
  luts = tf.where(step > 0, (before + step // 2) // tf.maximum(step, 1),
                  tf.range(256))
  return _lookup(images, luts)


def invert(images, *_):
  return 255 - images


def posterize(images, _, v):
  bits = int(4 * v)
  return tf.bitwise.bitwise_and(images, (0xFF << (8 - bits)) & 0xFF)


def solarize(images, _, v):
  threshold = int(256 * v)
  return tf.where(tf.cast(images, tf.int32) < threshold, images, 255 - images)


def solarize_add(images, _, v):
  added = tf.clip_by_value(tf.cast(images, tf.int32) + int(110 * v), 0, 255)
  return tf.where(images < 128, tf.cast(added, tf.uint8), images)


def color(images, _, v):
  return _blend(_grey(images), images, 0.1 + 1.8 * v)


def contrast(images, _, v):
  """PIL's ImageEnhance.Contrast: blend with the mean grey level (rounded)."""
  mean = tf.reduce_mean(tf.cast(_grey(images), tf.float64), axis=[1, 2, 3],
                        keepdims=True)
  degenerate = tf.cast(tf.floor(mean + 0.5), tf.uint8)
  return _blend(tf.broadcast_to(degenerate, tf.shape(images)), images,
                0.1 + 1.8 * v)


def brightness(images, _, v):
  return _blend(tf.zeros_like(images), images, 0.1 + 1.8 * v)


def sharpness(images, _, v):
  """PIL's ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH's result.

  SMOOTH is the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded;
  PIL keeps the border pixels of the input.
  """
  kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13
  c = images.shape[-1]
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, c, 1])
  smooth = tf.nn.depthwise_conv2d(tf.cast(images, tf.float32), kernel,
                                  [1, 1, 1, 1], 'SAME')
  smooth = tf.cast(tf.clip_by_value(tf.round(smooth), 0, 255), tf.uint8)
  inner = tf.pad(tf.ones(tf.shape(images)[1:3] - 2, tf.bool), [[1, 1], [1, 1]])
  degenerate = tf.where(inner[None, :, :, None], smooth, images)
  return _blend(degenerate, images, 0.1 + 1.8 * v)


def rotate(images, uniforms, v):
  """PIL's Image.rotate(+-30v degrees, NEAREST): about the image centre."""
  theta = _signed(uniforms, 30 * v) * (math.pi / 180)
  hw = tf.cast(tf.shape(images)[1:3], tf.float32)
  cy, cx = hw[0] / 2, hw[1] / 2
  cos, sin = tf.cos(theta), tf.sin(theta)
  # Output point p maps to R(-theta) (p - centre) + centre.
  c = cx - cos * cx + sin * cy
  f = cy - sin * cx - cos * cy
  return _affine(images, tf.stack([cos, -sin, c, sin, cos, f], axis=1))


def _shear(images, uniforms, v, axis):
  level = _signed(uniforms, 0.3 * v)
  zeros, ones = tf.zeros_like(level), tf.ones_like(level)
  rows = ([ones, level, zeros, zeros, ones, zeros] if axis == 'x' else
          [ones, zeros, zeros, level, ones, zeros])
  return _affine(images, tf.stack(rows, axis=1))


def shear_x(images, uniforms, v):
  return _shear(images, uniforms, v, 'x')


def shear_y(images, uniforms, v):
  return _shear(images, uniforms, v, 'y')


def _translate(images, uniforms, v, axis):
  side = tf.cast(tf.shape(images)[2 if axis == 'x' else 1], tf.float32)
  pixels = _signed(uniforms, _TRANSLATE_FRACTION * v * side)
  zeros, ones = tf.zeros_like(pixels), tf.ones_like(pixels)
  rows = ([ones, zeros, pixels, zeros, ones, zeros] if axis == 'x' else
          [ones, zeros, zeros, zeros, ones, pixels])
  return _affine(images, tf.stack(rows, axis=1))


def translate_x(images, uniforms, v):
  return _translate(images, uniforms, v, 'x')


def translate_y(images, uniforms, v):
  return _translate(images, uniforms, v, 'y')


def cutout(images, uniforms, v):
  """Fills rows [y - p, y + p) x columns [x - p, x + p) with grey."""
  height, width = tf.unstack(tf.shape(images)[1:3])
  # big_vision's int(40v) pixels at 224 px, scaled with integers.
  pad = int(_CUTOUT_AT_224 * v) * tf.minimum(height, width) // 224
  y = tf.cast(uniforms[:, 2] * tf.cast(height, tf.float32), tf.int32)[:, None]
  x = tf.cast(uniforms[:, 3] * tf.cast(width, tf.float32), tf.int32)[:, None]
  rows, cols = tf.range(height)[None], tf.range(width)[None]
  in_rows = (rows >= y - pad) & (rows < y + pad)
  in_cols = (cols >= x - pad) & (cols < x + pad)
  box = in_rows[:, :, None, None] & in_cols[:, None, :, None]
  return tf.where(box, tf.constant(FILL, tf.uint8), images)


_FUNCTIONS = {
    'AutoContrast': autocontrast, 'Equalize': equalize, 'Invert': invert,
    'Rotate': rotate, 'Posterize': posterize, 'Solarize': solarize,
    'Color': color, 'Contrast': contrast, 'Brightness': brightness,
    'Sharpness': sharpness, 'ShearX': shear_x, 'ShearY': shear_y,
    'TranslateX': translate_x, 'TranslateY': translate_y, 'Cutout': cutout,
    'SolarizeAdd': solarize_add}


def apply_op(name: str, images, uniforms, magnitude: float):
  """One operation of `OPS` on a uint8 batch, at `magnitude` in [0, 10]."""
  return _FUNCTIONS[name](images, uniforms, magnitude / MAX_MAGNITUDE)


def to_uint8(images):
  """Rounds and clips float images in [0, 255]; uint8 passes through."""
  if images.dtype == tf.uint8:
    return images
  return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)


def randaugment(images, uniforms, num_layers: int, magnitude: float):
  """`num_layers` random ops of `OPS` on each image of a uint8 batch.

  Each layer splits the batch by the op each image drew (one uniform), runs
  every op once on its share, and puts the images back in order: the work is
  one op per image per layer, in a constant number of TF ops per batch.
  """
  images = to_uint8(images)
  n = tf.shape(images)[0]
  positions = tf.range(n)
  for layer in range(num_layers):
    u = uniforms[:, layer * UNIFORMS_PER_LAYER:
                 (layer + 1) * UNIFORMS_PER_LAYER]
    choice = tf.minimum(tf.cast(u[:, 0] * len(OPS), tf.int32), len(OPS) - 1)
    image_parts = tf.dynamic_partition(images, choice, len(OPS))
    uniform_parts = tf.dynamic_partition(u, choice, len(OPS))
    index_parts = tf.dynamic_partition(positions, choice, len(OPS))
    outputs = [apply_op(name, part, part_u, magnitude) for name, part, part_u
               in zip(OPS, image_parts, uniform_parts)]
    images = tf.ensure_shape(tf.dynamic_stitch(index_parts, outputs),
                             images.shape)
  return images
