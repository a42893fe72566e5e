"""Locked-image tuning: the `lit` task (`LitTask`, `tasks.py`).

LiT (Zhai et al., arXiv 2111.07991) trains a text tower to embed captions
next to the embeddings of a frozen ("locked") image tower. Here the image
tower is any published-layout ViT checkpoint (`config.image_checkpoint`).
The image-text pairs are either the images of a classification dataset with
captions made from their class names and `config.captions.templates` (the
offline default), or real captioned images: a folder or a TFDS dataset
(`data/captions.py`).

One batch, end to end: `input_pipeline.train_iterator` yields images and
labels (order = f(seed, step)) -> on the mesh -> the jitted step picks a
template per example (rng = fold_in(key, step)) and looks its caption's
tokens up in a table tokenized once; with real captions the iterator
brings each example's tokens instead (`captions.Tokens.pick`, on the
host) -> symmetric contrastive loss on t * zimg @ ztxt.T, the loss given
to the step every task shares (`steps.make_step`: EMA with `ema_decay`) ->
gradients reach the text tower, the heads and t only (the image tower's
params are `frozen`: behind stop_gradient, no updates nor optimizer state;
`accum_steps` and `optimizer.layer_decay` are refused, the classifier's
Mixup, label smoothing and compute options are not LiT fields) -> the
training loop's
logs, checkpoints and graceful stop (`loop.py`) -> zero-shot accuracy on
`config.dataset`'s eval split and/or image<->text retrieval recall@1 on the
held-out pairs -> WORKDIR/{params.npz, config.json, vocab.txt}: what
`python -m vit_jax.zeroshot --workdir=WORKDIR` reads.
"""
import os
import re
from typing import Any, Dict, List, Sequence

from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from vit_jax import atomic_file
from vit_jax import checkpoint
from vit_jax import models
from vit_jax import remote
from vit_jax.data import captions
from vit_jax.data import input_pipeline
from vit_jax.evaluators import zeroshot
from vit_jax.models import lit
from vit_jax.train import optim
from vit_jax.train import sharding
from vit_jax.train import steps
from vit_jax.workdir import layout

RANDOM_IMAGE_TOWER = 'random'
_SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')
# BERT's basic tokenization: words and single punctuation characters.
_WORDS = re.compile(r'\w+|[^\w\s]')


def build_vocab(texts: Sequence[str]) -> List[str]:
  """A WordPiece vocabulary holding every (lower-cased) word of `texts`."""
  words = sorted({w for t in texts for w in _WORDS.findall(t.lower())})
  return list(_SPECIAL_TOKENS) + words


def _vocab_path(config, workdir: str, texts: Sequence[str]) -> str:
  """`config.vocab_path`, or WORKDIR/vocab.txt built from `texts`."""
  path = str(layout.path(workdir, layout.VOCAB))
  if config.get('vocab_path'):
    # Copied beside the params (under this name whatever its kind), so that
    # the workdir is complete for `zeroshot --workdir`.
    if jax.process_index() == 0 and config.vocab_path != path:
      atomic_file.write(path, epath.Path(config.vocab_path).read_bytes())
    return path
  if config.model.pp.tokenizer_name != 'bert':
    raise ValueError('Without config.vocab_path only a BERT vocabulary can be '
                     "built; set config.model.pp.tokenizer_name='bert' or pass"
                     ' the SentencePiece model as config.vocab_path.')
  if jax.process_index() == 0:
    atomic_file.write(path, '\n'.join(build_vocab(texts)) + '\n')
  return path


def _validate(config):
  """LiT's bad-input errors, after the loop's `validate.check_run`.

  Returns (class names for zero-shot eval or None, image-text pairs or None
  for template captions).
  """
  # Unreachable storage fails in seconds (remote.TIMEOUT_S).
  for field in ('image_checkpoint', 'vocab_path', 'data_dir'):
    remote.check(config.get(field) or '', f'config.{field}')
  for field in ('folder', 'data_dir'):
    remote.check(config.captions.get(field) or '', f'config.captions.{field}')
  if config.accum_steps != 1:
    raise ValueError(f'config.accum_steps={config.accum_steps}: the '
                     f'{config.task!r} task needs 1, its loss compares every '
                     'image with every caption of the batch.')
  if config.optimizer.layer_decay:
    raise ValueError(f'config.optimizer.layer_decay='
                     f'{config.optimizer.layer_decay}: the {config.task!r} task'
                     ' needs 0 (off); layer decay orders the blocks of one '
                     'ViT, an image-text model has two towers.')
  optim.check(config)
  source = config.get('image_checkpoint')
  if not source:
    raise ValueError(
        'Set config.image_checkpoint to the locked image tower: a ViT .npz '
        'whose architecture is config.model.image (e.g. WORKDIR/params.npz '
        "of `python main.py`), or 'random' for an untrained tower.")
  if (source != RANDOM_IMAGE_TOWER and '://' not in source and
      not os.path.isfile(source)):
    raise FileNotFoundError(
        f'config.image_checkpoint={source!r} does not exist.')
  vocab = config.get('vocab_path')
  if vocab and '://' not in vocab and not os.path.isfile(vocab):
    raise FileNotFoundError(f'config.vocab_path={vocab!r} does not exist; '
                            'leave it unset to build one from the captions.')
  if config.model.pp.size != config.image_size:
    raise ValueError(f'config.model.pp.size={config.model.pp.size} differs '
                     f'from config.image_size={config.image_size}.')
  real_captions = captions.is_configured(config)
  template_sets = [config.zeroshot_templates] if config.dataset else []
  if not real_captions:
    template_sets.append(config.captions.templates)
  for templates in template_sets:
    if not templates or any('{}' not in t for t in templates):
      raise ValueError(f'Templates need a {{}} for the class name: '
                       f'{tuple(templates)}.')
  input_pipeline.check_config(config)
  names = None
  if config.dataset:
    info = input_pipeline.get_info(config)
    names = zeroshot.dataset_class_names(config)
    if len(names) != info.num_classes:
      raise ValueError(f'{len(names)} class names for {info.num_classes} '
                       'classes.')
  elif not real_captions:
    raise ValueError('Set config.dataset: its class names make the captions '
                     'unless config.captions.folder or .tfds names real ones.')
  pairs = None
  if real_captions:
    pairs = captions.split_holdout(captions.load(config),
                                   config.captions.holdout)
    if not names and not pairs[1]:
      raise ValueError('Nothing to evaluate: set config.captions.holdout > 0 '
                       '(retrieval) and/or config.dataset (zero-shot).')
  return names, pairs


def _check_no_bias(config):
  """The contrastive (softmax) loss is blind to a bias on the logits: a LiT
  model has none."""
  if config.model.get('bias_init') is not None:
    raise ValueError(f'config.model.bias_init={config.model.bias_init}: the '
                     f"{config.task!r} task's softmax loss has no use for a "
                     "bias; remove it, or train the sigmoid loss (task='siglip',"
                     ' configs/siglip.py).')


def _init_params(config, model, key) -> Dict[str, Any]:
  size, max_len = config.image_size, config.model.pp.max_len
  params = jax.jit(lambda k: model.init(
      k, images=jnp.zeros((1, size, size, 3)),
      tokens=jnp.zeros((1, max_len), jnp.int32))['params'])(key)
  params = jax.device_get(params)  # t (and b) as config.model sets them.
  if config.image_checkpoint != RANDOM_IMAGE_TOWER:
    # The classifier head is dropped; the image head (if any) stays fresh.
    params['img'] = checkpoint.load_pretrained(
        pretrained_path=config.image_checkpoint, init_params=params['img'],
        model_config=config.model.image)
  return params


def frozen_mask(params) -> Any:
  """True for the image tower's params, except its projection head."""
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {k: k[0] == 'img' and k[1] != 'head' for k in flat})


def contrastive_loss(zimg, ztxt, t):
  """Mean of image->text and text->image cross-entropies, pairs on the
  diagonal of the [n, n] logits t * zimg @ ztxt.T."""
  logits = t * zimg @ ztxt.T
  labels = jnp.arange(len(logits))
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels) +
          optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
          ).mean() / 2


def make_loss(model) -> steps.Loss:
  """`steps.Loss`: the contrastive loss of a batch of 'image' and 'tokens'
  (the step key's second half drives dropout), and the temperature."""

  def loss(params, batch, rng):
    zimg, ztxt, out = model.apply(
        {'params': params}, images=batch['image'], tokens=batch['tokens'],
        train=True, rngs={'dropout': jax.random.split(rng)[1]})
    return (contrastive_loss(zimg, ztxt, out['t']),
            {'train/temperature': out['t'][0]})

  return loss


def caption_tokens(caption_table, key):
  """`steps.make_step`'s `prepare`: each example's caption tokens. From
  `caption_table` [classes, templates, max_len], each class's captions
  tokenized, a template per example drawn with the step key's first half;
  or, when `caption_table` is None, the batch's own 'tokens'."""
  table = None if caption_table is None else jnp.asarray(caption_table)

  def prepare(batch, step):
    if table is None:
      return {'image': batch['image'], 'tokens': batch['tokens']}
    rng = jax.random.split(jax.random.fold_in(key, step))[0]
    template = jax.random.randint(rng, batch['label'].shape, 0,
                                  table.shape[1])
    return {'image': batch['image'],
            'tokens': table[batch['label'], template]}

  return prepare


class LitTask:
  """`loop.Task` for a LiT config (configs/lit.py): config.task='lit'.

  The image-text pairs come from `config.captions` (real captions) or from
  `config.dataset`'s class names in `config.captions.templates`; the
  evaluation is zero-shot accuracy on `config.dataset` and/or retrieval on
  the held-out pairs.
  """

  name = 'lit'

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def check(self, workdir: str) -> None:
    del workdir
    self.check_model()
    self.names, self.pairs = _validate(self.config)

  def check_model(self) -> None:
    """The model's fields the loss depends on."""
    _check_no_bias(self.config)

  def prepare(self, workdir: str) -> None:
    """Tokenizes the captions; writes WORKDIR/vocab.txt (process 0)."""
    config, names, pairs = self.config, self.names, self.pairs
    self.prompts = tuple(config.zeroshot_templates)
    self.train_pairs, self.holdout = pairs or (None, None)
    self.train_tokens = self.holdout_tokens = self.caption_tokens = None
    if pairs:
      texts = [t for p in pairs if p for texts in p.captions for t in texts]
      texts += [t.format(n) for n in names or () for t in self.prompts]
      self.tokenizer = lit.get_tokenizer(
          config.model, _vocab_path(config, workdir, texts))
      self.train_tokens = captions.tokenize(self.tokenizer,
                                            self.train_pairs.captions)
      self.holdout_tokens = self.holdout and captions.tokenize(
          self.tokenizer, self.holdout.captions).first()
    else:
      templates = tuple(config.captions.templates)
      vocab = _vocab_path(config, workdir, [
          t.format(n) for n in names for t in templates + self.prompts])
      self.tokenizer = lit.get_tokenizer(config.model, vocab)
      self.caption_tokens = self.tokenizer(
          [t.format(n) for n in names for t in templates]
      ).reshape(len(names), len(templates), -1)
    self.model = models.create(config.model)
    self.evaluators = []
    if names:
      self.evaluators.append(zeroshot.ZeroShotEvaluator(
          config, self.model, self.tokenizer, names, self.prompts))
    if self.holdout:
      self.evaluators.append(zeroshot.RetrievalEvaluator(
          config, self.model, self.holdout.images, self.holdout_tokens))

  def init_state(self, mesh, key):
    params = _init_params(self.config, self.model, key)
    # A locked image tower (LiT), unless the model trains it too.
    self.frozen = (None if self.config.model.get('train_image') else
                   frozen_mask(params))
    self.mesh = mesh
    self.tx = optim.make_optimizer(self.config, self.frozen)
    state = steps.fresh_state(jnp.zeros((), jnp.int32), params, self.tx,
                              with_ema=bool(self.config.ema_decay))
    state_sh = sharding.state_shardings(mesh, state)
    return jax.device_put(state, state_sh), state_sh

  def train_step(self, key):
    return steps.make_step(
        self.config, self.loss(), self.tx, key,
        prepare=caption_tokens(self.caption_tokens, key), frozen=self.frozen)

  def loss(self) -> steps.Loss:
    """The task's loss, for `steps.make_step` (after `init_state`)."""
    return make_loss(self.model)

  def train_batches(self, start_step: int):
    captioned = {}  # The pairs' images and tokens, or config.dataset's.
    if self.pairs:
      seed = self.config.seed % 2**64  # As the input pipeline's.
      tokens = self.train_tokens
      captioned = dict(
          source=self.train_pairs.images, extra=lambda indices, positions: {
              'tokens': tokens.pick(seed, indices, positions)})
    return input_pipeline.train_iterator(
        self.config, start_step=start_step,
        process_index=jax.process_index(),
        process_count=jax.process_count(), **captioned)

  def describe(self):
    c = self.config.captions
    data = (c.get('folder') or c.get('tfds') and f'tfds:{c.tfds}' or
            self.config.dataset)
    return self.config.model.get('model_name', 'LiT'), data
