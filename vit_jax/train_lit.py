"""Locked-image tuning: `train_and_evaluate(config, workdir)` for configs/lit.py.

LiT (Zhai et al., arXiv 2111.07991) trains a text tower to embed captions
next to the embeddings of a frozen ("locked") image tower. Here the image
tower is any published-layout ViT checkpoint (`config.image_checkpoint`).
The image-text pairs are either the images of a classification dataset with
captions made from their class names and `config.captions.templates` (the
offline default), or real captioned images: a folder or a TFDS dataset
(`caption_data`).

One batch, end to end: `input_pipeline.train_iterator` yields images and
labels (order = f(seed, step)) -> on the mesh -> the jitted step picks a
template per example (rng = fold_in(key, step)) and looks its caption's
tokens up in a table tokenized once; with real captions the iterator
brings each example's tokens instead (`caption_data.Tokens.pick`, on the
host) -> symmetric contrastive loss on
t * zimg @ ztxt.T -> gradients reach the text tower, the heads and t only
(the image tower's params sit behind stop_gradient and get no updates nor
optimizer state) -> orbax checkpoints (resume by re-running) -> zero-shot
accuracy on `config.dataset`'s eval split and/or image<->text retrieval
recall@1 on the held-out pairs -> WORKDIR/{params.npz, config.json, vocab.txt}:
what `python -m vit_jax.zeroshot --workdir=WORKDIR` reads.
"""
import os
import re
import time
from typing import Any, Dict, List, Sequence

from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vit_jax import caption_data
from vit_jax import checkpoint
from vit_jax import input_pipeline
from vit_jax import models_lit
from vit_jax import optim
from vit_jax import preemption
from vit_jax import sharding
from vit_jax import train
from vit_jax import train_checkpoints
from vit_jax import workdir_lock
from vit_jax import workdir_files
from vit_jax.evaluators import zeroshot

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
  path = os.path.join(workdir, workdir_files.VOCAB)
  if config.get('vocab_path'):
    # Copied beside the params (under this name whatever its kind), so that
    # the workdir is complete for `zeroshot --workdir`.
    if jax.process_index() == 0 and config.vocab_path != path:
      epath.Path(path).write_bytes(epath.Path(config.vocab_path).read_bytes())
    return path
  if config.model.pp.tokenizer_name != 'bert':
    raise ValueError('Without config.vocab_path only a BERT vocabulary can be '
                     "built; set config.model.pp.tokenizer_name='bert' or pass"
                     ' the SentencePiece model as config.vocab_path.')
  if jax.process_index() == 0:
    train._write_atomically(epath.Path(path),  # pylint: disable=protected-access
                            '\n'.join(build_vocab(texts)) + '\n')
  return path


def _validate(config, workdir: str):
  """Bad-input errors before anything compiles.

  Returns (class names for zero-shot eval or None, image-text pairs or None
  for template captions).
  """
  for name in ('total_steps', 'batch_size', 'eval_batch_size', 'log_every',
               'eval_every', 'checkpoint_every', 'image_size'):
    if config[name] <= 0:
      raise ValueError(f'config.{name}={config[name]} must be positive.')
  if config.get('accum_steps', 1) != 1:
    raise ValueError('LiT tuning needs accum_steps=1: the contrastive loss '
                     'compares every image with every caption of the batch.')
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
  real_captions = caption_data.is_configured(config)
  template_sets = [config.zeroshot_templates] if config.dataset else []
  if not real_captions:
    template_sets.append(config.captions.templates)
  for templates in template_sets:
    if not templates or any('{}' not in t for t in templates):
      raise ValueError(f'Templates need a {{}} for the class name: '
                       f'{tuple(templates)}.')
  sharding.check_split(config, jax.device_count(), jax.process_count())
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
    pairs = caption_data.split_holdout(caption_data.load(config),
                                       config.captions.holdout)
    if not names and not pairs[1]:
      raise ValueError('Nothing to evaluate: set config.captions.holdout > 0 '
                       '(retrieval) and/or config.dataset (zero-shot).')
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  return names, pairs


def _init_params(config, model, key) -> Dict[str, Any]:
  size, max_len = config.image_size, config.model.pp.max_len
  params = jax.jit(lambda k: model.init(
      k, images=jnp.zeros((1, size, size, 3)),
      tokens=jnp.zeros((1, max_len), jnp.int32))['params'])(key)
  params = jax.device_get(params)
  params['t'] = np.full((1,), np.log(config.temperature_init), np.float32)
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


def make_optimizer(config, params) -> optax.GradientTransformation:
  """The config's optimizer on the trainable params; none for the frozen."""
  labels = jax.tree.map(lambda f: 'frozen' if f else 'train',
                        frozen_mask(params))
  return optax.multi_transform({'train': optim.make_optimizer(config),
                                'frozen': optax.set_to_zero()}, labels)


def contrastive_loss(zimg, ztxt, t):
  """Mean of image->text and text->image cross-entropies, pairs on the
  diagonal of the [n, n] logits t * zimg @ ztxt.T."""
  logits = t * zimg @ ztxt.T
  labels = jnp.arange(len(logits))
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels) +
          optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
          ).mean() / 2


def make_train_step(config, model, tx, caption_tokens, frozen, key):
  """(state, batch) -> (state, metrics); `caption_tokens` [classes,
  templates, max_len] is each class's captions, tokenized, or None when the
  batches bring their own 'tokens'."""
  table = None if caption_tokens is None else jnp.asarray(caption_tokens)
  schedule = optim.lr_schedule(config)

  def loss_fn(params, images, tokens, rng):
    params = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p,
                          params, frozen)
    zimg, ztxt, out = model.apply({'params': params}, images=images,
                                  tokens=tokens, train=True,
                                  rngs={'dropout': rng})
    return contrastive_loss(zimg, ztxt, out['t'])

  def train_step(state, batch):
    params, step = state['params'], state['step']
    rng_caption, rng_dropout = jax.random.split(jax.random.fold_in(key, step))
    if table is None:
      tokens = batch['tokens']
    else:
      template = jax.random.randint(rng_caption, batch['label'].shape, 0,
                                    table.shape[1])
      tokens = table[batch['label'], template]
    loss, grads = jax.value_and_grad(loss_fn)(params, batch['image'], tokens,
                                              rng_dropout)
    updates, opt_state = tx.update(grads, state['opt_state'], params)
    new = {'step': step + 1, 'params': optax.apply_updates(params, updates),
           'opt_state': opt_state}
    metrics = {'train/loss': loss, 'train/grad_norm': optax.tree.norm(grads),
               'train/lr': schedule(step),
               'train/temperature': jnp.exp(params['t'][0])}
    return new, metrics

  return train_step


def _retrieval(config, model, params, holdout: caption_data.Pairs,
               tokens: np.ndarray) -> Dict[str, float]:
  """Image<->text recall@1 among the held-out pairs, `tokens` each image's
  first caption's; every process computes it over all of them."""
  ztxt = zeroshot.embed_texts(model, params, tokens)
  config = ml_collections.ConfigDict(config.to_dict())
  # Batches no bigger than the pairs: padding decodes example 0 again.
  config.eval_batch_size = min(config.eval_batch_size,
                               holdout.images.num_examples)
  zimg = zeroshot.embed_images(model, params, input_pipeline.eval_iterator(
      config, source=holdout.images))
  return zeroshot.retrieval_recall(zimg, ztxt)


def train_and_evaluate(config, workdir: str) -> Dict[str, float]:
  """Tunes `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final eval metrics (zero-shot and/or retrieval; see
  `caption_data`). The workdir lock and the
  graceful stop on SIGTERM/SIGINT are the classification trainer's.
  """
  names, pairs = _validate(config, workdir)
  with workdir_lock.hold(workdir), preemption.StopRequests(
      jax.process_count()) as stop_requests:
    return _tune(config, workdir, names, pairs, stop_requests)


def _tune(config, workdir: str, names, pairs,
          stop_requests) -> Dict[str, float]:
  """The body of `train_and_evaluate`, with the workdir locked."""
  prompts = tuple(config.zeroshot_templates)
  train_pairs, holdout = pairs or (None, None)
  if pairs:
    texts = [t for p in pairs if p for texts in p.captions for t in texts]
    texts += [t.format(n) for n in names or () for t in prompts]
    tokenizer = models_lit.get_tokenizer(
        config.model, _vocab_path(config, workdir, texts))
    train_tokens = caption_data.tokenize(tokenizer, train_pairs.captions)
    holdout_tokens = holdout and caption_data.tokenize(
        tokenizer, holdout.captions).first()
    caption_tokens = None
  else:
    templates = tuple(config.captions.templates)
    vocab = _vocab_path(config, workdir, [t.format(n) for n in names
                                          for t in templates + prompts])
    tokenizer = models_lit.get_tokenizer(config.model, vocab)
    caption_tokens = tokenizer([t.format(n) for n in names for t in templates]
                              ).reshape(len(names), len(templates), -1)
  model = models_lit.LitModel(**config.model)
  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
  params = _init_params(config, model, init_key)
  frozen = frozen_mask(params)
  tx = make_optimizer(config, params)
  is_main = jax.process_index() == 0
  if is_main:
    train._write_atomically(  # pylint: disable=protected-access
        epath.Path(workdir) / workdir_files.CONFIG,
        config.to_json_best_effort(indent=2))

  mesh = sharding.make_mesh(config.mesh)
  state = {'step': jnp.zeros((), jnp.int32), 'params': params,
           'opt_state': tx.init(params)}
  state_sh = sharding.state_shardings(mesh, state)
  state = jax.device_put(state, state_sh)
  manager = train_checkpoints.Manager(workdir, config)
  state = manager.restore_latest(state) or state
  start = int(state['step'])

  batch_sh = sharding.batch_sharding(mesh)
  train_step = jax.jit(
      make_train_step(config, model, tx, caption_tokens, frozen, train_key),
      in_shardings=(state_sh, batch_sh),
      out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=0)

  def run_eval():
    params = jax.device_get(state['params'])
    metrics = {}
    if names:
      classes = zeroshot.class_embeddings(model, params, tokenizer, names,
                                          prompts)
      metrics.update({k.replace('eval/', 'eval/zeroshot_'): v for k, v in
                      zeroshot.zero_shot_accuracy(
                          model, params, classes,
                          input_pipeline.eval_iterator(config)).items()})
    if holdout:
      metrics.update({k.replace('eval/', 'eval/retrieval_'): v for k, v in
                      _retrieval(config, model, params, holdout,
                                 holdout_tokens).items()})
    return metrics

  out = train._Outputs(  # pylint: disable=protected-access
      workdir, config.total_steps, start, is_main)
  out.console.line(f'LiT tuning from step {start} of {config.total_steps} '
                   f'on {jax.device_count()} devices, workdir {workdir}')
  captioned = {}  # The pairs' images and tokens, or config.dataset's.
  if pairs:
    seed = config.seed % 2**64  # As the input pipeline's.
    captioned = dict(
        source=train_pairs.images, extra=lambda indices, positions: {
            'tokens': train_tokens.pick(seed, indices, positions)})
  batches = sharding.on_mesh(
      mesh, input_pipeline.train_iterator(
          config, start_step=start, process_index=jax.process_index(),
          process_count=jax.process_count(), **captioned),
      config.batch_size, ahead=2)
  pending, eval_metrics = [], None
  t_log = time.time()
  for step in range(start + 1, config.total_steps + 1):
    state, metrics = train_step(state, next(batches))
    pending.append(metrics)
    out.console.tick(step)
    at_end = step == config.total_steps
    stop = stop_requests.should_stop(step)  # Each step, on every process.
    save = at_end or step % config.checkpoint_every == 0 or stop
    if step % config.log_every == 0 or save:
      values = jax.device_get(pending)
      if not all(np.isfinite(v['train/loss']) for v in values):
        manager.close()
        raise train.NonFiniteLossError(
            f'Non-finite LiT loss by step {step}; the last good checkpoint '
            f'is kept in {manager.directory}. Lower the learning rate.')
      now = time.time()
      record = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
      record['train/images_per_sec'] = (len(values) * config.batch_size /
                                        (now - t_log))
      out.write(step, record)
      out.console.step(step, record)
      pending, t_log = [], now
    if save:
      manager.save(step, state)
    if stop and not at_end:
      batches.close()
      manager.close()  # Waits for the save.
      out.close()
      raise stop_requests.stopped(step, manager.directory)
    if at_end or step % config.eval_every == 0:
      t_eval = time.time()
      eval_metrics = run_eval()
      out.write(step, eval_metrics)
      out.console.eval(step, eval_metrics)
      t_log += time.time() - t_eval
  batches.close()
  if eval_metrics is None:  # Resumed after the last step: just report.
    eval_metrics = run_eval()
  manager.close()
  if is_main:
    checkpoint.save_npz(
        os.path.join(workdir, workdir_files.PARAMS),
        jax.device_get(state['params']))
  out.close()
  return eval_metrics
