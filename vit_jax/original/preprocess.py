"""The original's `preprocess`: LiT's image preprocessing and its `tf.data`
preprocessing op, over this package's eval resizing
(`data/input_pipeline.py`) and tokenizers (`models/tokenizers.py`)."""
import dataclasses

import ml_collections
import numpy as np
import tensorflow as tf

from vit_jax.data import input_pipeline
from vit_jax.models import tokenizers


@dataclasses.dataclass(frozen=True)
class PreprocessImages:
  """uint8 images of any size -> float32 [size, size, 3] in [-1, 1].

  `crop`: the central square is taken first (`pp.eval='central_crop'`),
  else the whole image is resized (`'resize'`); the resized pixels are
  rounded to uint8 before scaling, as the original did.
  """
  size: int
  crop: bool = False

  def preprocess_tf(self, image):
    """One uint8 image tensor [H, W, C] -> [size, size, 3], in a TF graph."""
    config = ml_collections.ConfigDict(dict(
        image_size=self.size,
        pp=dict(eval='central_crop' if self.crop else 'resize')))
    return input_pipeline.eval_model_input_tf(image[None], config,
                                              quantize=True)[0]

  def __call__(self, images) -> np.ndarray:
    """A sequence of uint8 images (sizes may differ) -> [n, size, size, 3]."""
    return np.stack([self.preprocess_tf(tf.constant(image)).numpy()
                     for image in images])


def get_pp(*, tokenizer_name: str, vocab_path: str, max_len: int, size: int,
           crop: bool = False):
  """A `tf.data.Dataset.map` function: features['image'] preprocessed
  (`PreprocessImages`), features['text'] tokenized into features['tokens'];
  either may be absent."""
  tokenizer = tokenizers.get_tokenizer(tokenizer_name)(
      vocab_path=vocab_path, max_len=max_len)
  images = PreprocessImages(size=size, crop=crop)

  def pp(features):
    features = dict(features)
    if 'image' in features:
      features['image'] = images.preprocess_tf(features['image'])
    if 'text' in features:
      features['tokens'] = tokenizer.preprocess_tf(features['text'])
    return features

  return pp
