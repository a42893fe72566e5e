"""Zero-shot classification with a LiT model: classes named, not trained.

Each class name is put into prompt templates ("a photo of a {}.", ...), the
text embeddings of its prompts are averaged (then re-normalised), and an
image is assigned the class whose embedding is nearest (largest dot product
with the image embedding), as in the LiT paper. Also image-text retrieval
recall, for captioned eval data. `python -m vit_jax.zeroshot` runs it; LiT
training runs `ZeroShotEvaluator` and `RetrievalEvaluator`
(vit_jax/evaluators/__init__.py).
"""
import os
from typing import Callable, Dict, Iterable, List, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vit_jax.evaluators import classification
from vit_jax.models import two_towers


# Prompts in the style of the LiT paper / CLIP's ImageNet prompts.
TEMPLATES = (
    'a photo of a {}.',
    'a bad photo of a {}.',
    'a photo of the {}.',
    'a close-up photo of a {}.',
    'a low resolution photo of a {}.',
    'a black and white photo of the {}.',
)

FASHION_MNIST_CLASSES = (
    't-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt',
    'sneaker', 'bag', 'ankle boot')

def dataset_class_names(config) -> List[str]:
  """The class names of `config.dataset`, in label order."""
  if config.dataset == 'fashion_mnist':
    return list(FASHION_MNIST_CLASSES)
  if config.dataset == 'imagefolder':
    root = os.path.join(config.data_dir or '', config.train_split)
    if not os.path.isdir(root):
      raise ValueError(f'Image folder {root} does not exist.')
    return sorted(e.name.replace('_', ' ') for e in os.scandir(root)
                  if e.is_dir())
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(config.dataset, data_dir=config.get('data_dir'))
  _, label_key = builder.info.supervised_keys
  return [n.replace('_', ' ') for n in builder.info.features[label_key].names]


def embed_texts(model, params, tokens: np.ndarray,
                batch_size: int = 256) -> np.ndarray:
  """[n, dim]: the unit-norm text embeddings of tokens [n, max_len]."""
  embed = jax.jit(lambda p, t: model.apply({'params': p}, tokens=t)[1])
  return np.concatenate([np.asarray(embed(params, tokens[i:i + batch_size]))
                         for i in range(0, len(tokens), batch_size)])


def embed_images(model, params, batches: Iterable) -> np.ndarray:
  """[n, dim]: the image embeddings of the real (mask=True) examples of
  `eval_iterator`-style batches, in order."""
  embed = jax.jit(lambda p, x: model.apply({'params': p}, images=x)[0])
  return np.concatenate([np.asarray(embed(params, b['image']))[b['mask']]
                         for b in batches])


def retrieval_recall(zimg: np.ndarray, ztxt: np.ndarray) -> Dict[str, float]:
  """Recall@1 of image i's text among all texts (image->text), and of text
  i's image among all images (text->image), for n pairs [n, dim]."""
  sims = zimg @ ztxt.T
  target = np.arange(len(sims))
  return {'eval/i2t_recall_at_1': float(np.mean(sims.argmax(1) == target)),
          'eval/t2i_recall_at_1': float(np.mean(sims.argmax(0) == target)),
          'eval/num_pairs': len(sims)}


def class_embeddings(model, params, tokenizer, class_names: Sequence[str],
                     templates: Sequence[str] = TEMPLATES,
                     batch_size: int = 256) -> np.ndarray:
  """[classes, dim]: the unit-norm mean of each class's prompt embeddings."""
  if not class_names:
    raise ValueError('No class names to classify into.')
  bad = [t for t in templates if '{}' not in t]
  if not templates or bad:
    raise ValueError(f'Every template needs a {{}} for the class name: '
                     f'{bad or "none given"}.')
  texts = [t.format(name) for name in class_names for t in templates]
  z = embed_texts(model, params, tokenizer(texts), batch_size)
  z = z.reshape(len(class_names), len(templates), -1).mean(1)
  return z / np.linalg.norm(z, axis=1, keepdims=True)


def sigmoid_masked_sums(logits, batch) -> Dict[str, jnp.ndarray]:
  """`classification.masked_sums` for SigLIP's logits t * zimg @ ztxt.T + b:
  the loss is each image's sigmoid loss over the classes (its class the
  positive, every other one a negative); the prediction the most probable
  class."""
  mask = batch['mask'].astype(jnp.float32)
  signs = 2 * jax.nn.one_hot(batch['label'], logits.shape[-1]) - 1
  loss = -jnp.sum(jax.nn.log_sigmoid(signs * logits), axis=-1)
  correct = jnp.argmax(logits, -1) == batch['label']
  return {'correct': jnp.sum(correct * mask), 'loss': jnp.sum(loss * mask),
          'count': jnp.sum(mask)}


def make_eval_step(model, classes: np.ndarray) -> Callable:
  """`classification.evaluate`'s step: zero-shot logits t * zimg @ classes.T,
  scored as softmax probabilities over the classes (LiT), or, for a model
  with a bias b (SigLIP), as a sigmoid probability per class of logits + b.
  """
  classes = jnp.asarray(classes)

  def eval_step(params, batch):
    zimg, _, out = model.apply({'params': params}, images=batch['image'])
    logits = out['t'] * zimg @ classes.T
    if 'b' in out:
      return sigmoid_masked_sums(logits + out['b'], batch)
    return classification.masked_sums(logits, batch)

  return eval_step


def zero_shot_accuracy(model, params, classes: np.ndarray,
                       batches: Iterable) -> Dict[str, float]:
  """Accuracy (and loss) over batches of {'image', 'label', 'mask'}."""
  return classification.evaluate(jax.jit(make_eval_step(model, classes)),
                                 params, batches)


def classify(model, params, images: np.ndarray, classes: np.ndarray):
  """(probabilities [n, classes], predicted class [n]) for a few images:
  a softmax over the classes (LiT), or each class's sigmoid (SigLIP: a
  model with a bias; `two_towers.pairwise_probabilities`)."""
  zimg, _, out = jax.jit(lambda p, x: model.apply({'params': p}, images=x))(
      params, images)
  probs = two_towers.pairwise_probabilities(zimg, classes, out)
  return np.asarray(probs), np.asarray(jnp.argmax(probs, -1))


def _prefixed(metrics: Dict[str, float], kind: str) -> Dict[str, float]:
  return {k.replace('eval/', f'eval/{kind}_'): v for k, v in metrics.items()}


class ZeroShotEvaluator:
  """Zero-shot accuracy and loss of a LiT model over `config.eval_split`,
  the classes named by `class_names` in `templates`
  (`eval/zeroshot_accuracy`, ...)."""

  def __init__(self, config, model, tokenizer, class_names: Sequence[str],
               templates: Sequence[str] = TEMPLATES):
    self.config, self.model, self.tokenizer = config, model, tokenizer
    self.class_names, self.templates = list(class_names), tuple(templates)

  def __call__(self, params, mesh) -> Dict[str, float]:
    del mesh  # Embeddings are computed from a host copy of the params.
    # pylint: disable=g-import-not-at-top  (TensorFlow only when run)
    from vit_jax.data import input_pipeline
    params = jax.device_get(params)
    classes = class_embeddings(self.model, params, self.tokenizer,
                               self.class_names, self.templates)
    return _prefixed(zero_shot_accuracy(
        self.model, params, classes,
        input_pipeline.eval_iterator(self.config)), 'zeroshot')


class RetrievalEvaluator:
  """Image<->text recall@1 among held-out pairs (`eval/retrieval_...`):
  `images` a data source of their images, `tokens` [n, max_len] each
  image's first caption's tokens. Every process computes it over all
  pairs."""

  def __init__(self, config, model, images, tokens: np.ndarray):
    config = ml_collections.ConfigDict(config.to_dict())
    # Batches no bigger than the pairs: padding decodes example 0 again.
    config.eval_batch_size = min(config.eval_batch_size, images.num_examples)
    self.config, self.model = config, model
    self.images, self.tokens = images, tokens

  def __call__(self, params, mesh) -> Dict[str, float]:
    del mesh  # As ZeroShotEvaluator.
    # pylint: disable=g-import-not-at-top  (TensorFlow only when run)
    from vit_jax.data import input_pipeline
    params = jax.device_get(params)
    ztxt = embed_texts(self.model, params, self.tokens)
    zimg = embed_images(self.model, params, input_pipeline.eval_iterator(
        self.config, source=self.images))
    return _prefixed(retrieval_recall(zimg, ztxt), 'retrieval')
