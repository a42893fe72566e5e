r"""What a ViT has learned, as in Fig. 6 and 7 of the paper; how a run trained.

  python -m vit_jax.visualize --model=ViT-B_16 --checkpoint=ViT-B_16.npz \
      --image=photo.jpg [--image=...] --out_dir=/tmp/vis
  python -m vit_jax.visualize \
      --checkpoint=hf-hub:timm/vit_base_patch16_224.augreg_in21k \
      --image=photo.jpg --out_dir=/tmp/vis
  python -m vit_jax.visualize --workdir=DIR [--step=N] [--image=...] \
      [--metrics=OTHER_RUN/metrics.jsonl] --out_dir=/tmp/vis

Model flags are those of `vit_jax.predict`: --model or --config_json,
--checkpoint, --image_size; or --workdir (a `main.py` run, or a directory
laid out as one, like notebooks/models/fashion_mnist_vit) and --step. Writes
to --out_dir:
  posemb_similarity.png         cosine similarity of position embeddings
  embedding_pcs.png             principal components of the patch filters
                                (plain ViTs; a hybrid's 1x1 filters over
                                ResNet features are no picture)
  attention_rollout_<i>.png     what the class token attends to, per image
  mean_attention_distance.png   attention distance per head and layer,
                                averaged over the images
  training_curves.png           train loss and eval accuracy against step,
                                from --metrics (default: the --workdir's
                                metrics.jsonl, where it has one)
The rollouts and distances need images: the --image files, or with
--workdir and no --image the first --num_images of the run's eval split
(rollouts of the first image of --num_rollouts classes).

The README's figures (docs/figures) are made by

  python -m vit_jax.visualize --workdir=notebooks/models/fashion_mnist_vit \
      --metrics=runs/default/metrics.jsonl --out_dir=docs/figures

The library functions take and return numpy arrays; plotting is kept apart.
Figures are drawn with `matplotlib.figure.Figure`, which renders with Agg and
needs neither pyplot nor a display.
"""
import os
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from absl import app
from absl import flags
from etils import epath
from matplotlib.figure import Figure
import ml_collections
import numpy as np
from PIL import Image

from vit_jax import command_line
from vit_jax import inference
from vit_jax import models
from vit_jax.workdir import layout
from vit_jax.workdir import metrics

FLAGS = flags.FLAGS
Grid = Tuple[int, int]


def attention_weights(model, params, images) -> list:
  """Per layer, the attention weights [B, heads, T, T] for `images`."""
  _, state = model.apply({'params': params}, images, train=False,
                         mutable=['intermediates'])
  blocks = state['intermediates']['Transformer']
  return [np.asarray(blocks[f'encoderblock_{i}']
                     ['MultiHeadDotProductAttention_0']['attention_weights'][0])
          for i in range(len(blocks))]


def attention_rollout(attention_weights_per_layer: Sequence[np.ndarray],
                      grid: Grid, num_prefix_tokens: int) -> np.ndarray:
  """Attention rollout (Abnar & Zuidema 2020) over the patch grid.

  Each layer's attention, averaged over heads, gets the identity added for
  the residual connection and its rows renormalised; the product over layers
  says how much each input token flows into each output token. The map is the
  class token's row (with no class token, `num_prefix_tokens=0`, the mean
  over all tokens' rows, as a 'gap' head pools them), restricted to the patch
  tokens and renormalised to sum to 1.

  Args:
    attention_weights_per_layer: per layer, [B, heads, T, T] softmax weights.
    grid: (rows, cols) of patch tokens; T = num_prefix_tokens + rows * cols.
    num_prefix_tokens: 1 with a class token, else 0.

  Returns:
    [B, rows, cols], nonnegative, each map summing to 1.
  """
  joint = None
  for weights in attention_weights_per_layer:
    a = weights.astype(np.float64).mean(axis=1)
    a = a + np.eye(a.shape[-1])
    a /= a.sum(axis=-1, keepdims=True)
    joint = a if joint is None else a @ joint
  patches = joint[:, :, num_prefix_tokens:]
  flow = patches[:, 0] if num_prefix_tokens else patches.mean(axis=1)
  flow /= flow.sum(axis=-1, keepdims=True)
  return flow.reshape(-1, *grid)


def posemb_similarity(posemb: np.ndarray, grid: Grid,
                      num_prefix_tokens: int) -> np.ndarray:
  """[rows, cols, rows, cols] cosine similarity of patch position embeddings.

  `posemb` is [1, T, D] (or [T, D]) with the prefix (class token) first.
  """
  emb = np.asarray(posemb, np.float64).reshape(-1, posemb.shape[-1])
  emb = emb[num_prefix_tokens:]
  emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
  return (emb @ emb.T).reshape(*grid, *grid)


def mean_attention_distance(attention_weights_per_layer: Sequence[np.ndarray],
                            grid: Grid,
                            patch_size: Union[float, Tuple[float, float]],
                            num_prefix_tokens: int) -> np.ndarray:
  """[layers, heads] mean attention distance in pixels (paper Fig. 7 right).

  For each query patch, the distance between its centre and each key patch's
  centre, weighted by attention; averaged over query patches and images.
  Attention to the class token has no position: it is dropped and the rest
  renormalised, so the number is the mean distance *among patches*.

  Args:
    attention_weights_per_layer: per layer, [B, heads, T, T].
    grid: (rows, cols) of patch tokens.
    patch_size: pixels per patch (one number, or (height, width)).
    num_prefix_tokens: 1 with a class token, else 0.
  """
  ph, pw = np.broadcast_to(patch_size, (2,))
  rows, cols = np.meshgrid(np.arange(grid[0]) * ph, np.arange(grid[1]) * pw,
                           indexing='ij')
  centres = np.stack([rows.ravel(), cols.ravel()], axis=-1)
  distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
  out = []
  for weights in attention_weights_per_layer:
    w = weights[..., num_prefix_tokens:, num_prefix_tokens:].astype(np.float64)
    w /= w.sum(axis=-1, keepdims=True)
    out.append((w * distance).sum(axis=-1).mean(axis=(0, 2)))
  return np.stack(out)


def patch_embedding_pcs(kernel: np.ndarray, n: int) -> np.ndarray:
  """Top-n principal components of the patch embedding filters.

  `kernel` is [ph, pw, C, D]: D filters of ph*pw*C values each. Returns the
  components as [n, ph, pw, C], orthonormal when flattened, each with the
  sign that makes its largest entry positive (SVD leaves the sign arbitrary).
  """
  ph, pw, c, d = kernel.shape
  filters = np.asarray(kernel, np.float64).reshape(-1, d).T
  filters -= filters.mean(axis=0)
  _, _, vt = np.linalg.svd(filters, full_matrices=False)
  pcs = vt[:n]
  peaks = pcs[np.arange(len(pcs)), np.abs(pcs).argmax(axis=1)]
  pcs *= np.sign(peaks)[:, None]
  return pcs.reshape(-1, ph, pw, c)


def first_of_each_class(labels: np.ndarray, n: int) -> np.ndarray:
  """Indices of the first example of each of the first `n` classes met."""
  _, first = np.unique(np.asarray(labels), return_index=True)
  return np.sort(first)[:n]


def training_curves(records: Sequence[dict]
                    ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """{metric: (steps, values)} of a run's metrics.jsonl records.

  'train/loss', and every eval accuracy ('eval/accuracy', 'eval_ema/...');
  a resumed run's repeated steps keep their last record.

  Raises:
    ValueError: if the records hold no train loss.
  """
  by_step = {}
  for record in records:
    by_step.setdefault(record['step'], {}).update(record)
  names = sorted({k for r in by_step.values() for k in r
                  if k == 'train/loss' or
                  (k.startswith('eval') and k.endswith('/accuracy'))})
  if 'train/loss' not in names:
    raise ValueError('The metrics hold no train/loss: are they the '
                     'metrics.jsonl of a `python main.py` run?')
  out = {}
  for name in names:
    steps = sorted(s for s, r in by_step.items() if name in r)
    out[name] = (np.array(steps), np.array([by_step[s][name] for s in steps]))
  return out


def _unit_range(x):
  return (x - x.min()) / max(x.max() - x.min(), 1e-12)


def plot_rollout(image: np.ndarray, rollout: np.ndarray, path: str,
                 title: Optional[str] = None) -> None:
  """Image, rollout map and the image masked by it, side by side.

  The mask is scaled by its maximum, as the original notebook did: a near
  uniform map leaves the image nearly as it is instead of inventing contrast.
  `title` names the image (its class, the prediction) above the three.
  """
  h, w = image.shape[:2]
  mask = Image.fromarray(rollout.astype(np.float32)).resize(
      (w, h), Image.Resampling.BILINEAR)
  mask = np.asarray(mask)[..., None] / rollout.max()
  rgb = (image + 1) / 2
  fig = Figure(figsize=(9, 3.2), layout='constrained')
  for i, (name, picture) in enumerate([
      ('Input', rgb), ('Attention rollout', rollout),
      ('Input x rollout', rgb * mask)]):
    ax = fig.add_subplot(1, 3, i + 1)
    im = ax.imshow(picture)
    ax.set_title(name)
    ax.axis('off')
    if i == 1:
      fig.colorbar(im, ax=ax, fraction=0.046, format='%.2g')
  if title:
    fig.suptitle(title)
  fig.savefig(path, bbox_inches='tight')


def plot_posemb_similarity(sim: np.ndarray, path: str) -> None:
  """One small map per patch position, laid out on the grid (Fig. 7 centre)."""
  rows, cols = sim.shape[:2]
  mosaic = np.full((rows * (rows + 1), cols * (cols + 1)), np.nan)
  for r in range(rows):
    for c in range(cols):
      mosaic[r * (rows + 1):r * (rows + 1) + rows,
             c * (cols + 1):c * (cols + 1) + cols] = sim[r, c]
  fig = Figure(figsize=(7, 6), layout='constrained')
  ax = fig.add_subplot()
  im = ax.imshow(mosaic, vmin=-1, vmax=1, cmap='viridis')
  ax.set_xticks(np.arange(cols) * (cols + 1) + cols / 2 - 0.5,
                labels=np.arange(1, cols + 1))
  ax.set_yticks(np.arange(rows) * (rows + 1) + rows / 2 - 0.5,
                labels=np.arange(1, rows + 1))
  ax.set_xlabel('Input patch column')
  ax.set_ylabel('Input patch row')
  ax.set_title('Position embedding similarity')
  fig.colorbar(im, ax=ax, label='Cosine similarity')
  fig.savefig(path, bbox_inches='tight')


def plot_mean_attention_distance(distance: np.ndarray, path: str) -> None:
  """One dot per head at each depth (Fig. 7 right)."""
  layers, heads = distance.shape
  fig = Figure(figsize=(5, 4), layout='constrained')
  ax = fig.add_subplot()
  for h in range(heads):
    ax.scatter(np.arange(1, layers + 1), distance[:, h], s=12,
               label=f'Head {h + 1}')
  ax.set_xticks(np.arange(1, layers + 1))
  ax.set_xlabel('Network depth (layer)')
  ax.set_ylabel('Mean attention distance (pixels)')
  ax.set_title('Mean attention distance per head')
  ax.set_ylim(bottom=0)
  ax.legend(fontsize='x-small', ncol=2)
  fig.savefig(path, bbox_inches='tight')


def plot_embedding_pcs(pcs: np.ndarray, path: str,
                       title: str = 'Principal components of the patch '
                       'embedding filters') -> None:
  """Each component scaled to [0, 1] on its own (Fig. 7 left)."""
  cols = min(len(pcs), 7)
  rows = -(-len(pcs) // cols)
  fig = Figure(figsize=(cols * 1.2, rows * 1.2 + 0.4), layout='constrained')
  fig.suptitle(title)
  for i, pc in enumerate(pcs):
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.imshow(_unit_range(pc).squeeze(), cmap='gray')
    ax.axis('off')
  fig.savefig(path, bbox_inches='tight')


def plot_training_curves(curves: Dict[str, Tuple[np.ndarray, np.ndarray]],
                         path: str, title: str = 'Training') -> None:
  """Train loss (left) and eval accuracy in % (right) against step."""
  accuracies = [k for k in curves if k != 'train/loss']
  fig = Figure(figsize=(9 if accuracies else 4.5, 3.4), layout='constrained')
  fig.suptitle(title)
  ax = fig.add_subplot(1, 2 if accuracies else 1, 1)
  ax.plot(*curves['train/loss'], lw=1)
  ax.set_xlabel('Step')
  ax.set_ylabel('Train loss')
  ax.set_title('Train loss (each logged step)')
  if not accuracies:
    fig.savefig(path, bbox_inches='tight')
    return
  ax = fig.add_subplot(1, 2, 2)
  for name in accuracies:
    steps, values = curves[name]
    ax.plot(steps, 100 * values, marker='o', label=name)
    ax.annotate(f'{100 * values[-1]:.2f}%', (steps[-1], 100 * values[-1]),
                textcoords='offset points', xytext=(-8, -14), ha='right')
  ax.set_xlabel('Step')
  ax.set_ylabel('Accuracy (%)')
  ax.set_title('Eval accuracy')
  ax.set_xlim(left=0)
  ax.legend(loc='lower right')
  fig.savefig(path, bbox_inches='tight')


class _Model(NamedTuple):
  """What the figures need of a model, from a checkpoint or a run."""
  model: models.VisionTransformer
  params: dict
  config: ml_collections.ConfigDict  # The model config.
  image_size: int
  class_names: Optional[List[str]]


class _Images(NamedTuple):
  images: np.ndarray  # [N, S, S, 3] model input.
  rollouts: np.ndarray  # Indices of the images to show rollouts of.
  names: List[str]  # Per image: the file name, or its class in the split.


def _from_flags() -> _Model:
  """The model of --workdir, or of --checkpoint and --model/--config_json."""
  from vit_jax import remote  # pylint: disable=g-import-not-at-top
  if FLAGS.workdir:
    remote.check(FLAGS.workdir, '--workdir')  # Before importing TensorFlow.
    from vit_jax.workdir import run as run_dir  # pylint: disable=g-import-not-at-top
    run = run_dir.load(FLAGS.workdir, FLAGS.step)
    loaded = _Model(run.model, run.params, run.config.model,
                    run.config.image_size, run.class_names)
  else:
    remote.check(FLAGS.checkpoint, '--checkpoint')
    found = inference.load_model(FLAGS.checkpoint, model_name=FLAGS.model,
                                 config_json=FLAGS.config_json,
                                 image_size=FLAGS.image_size)
    loaded = _Model(found.model, found.params, found.config,
                    found.image_size, None)
  if not isinstance(loaded.model, models.VisionTransformer):
    raise ValueError(
        f'{loaded.config.get("model_name") or "This model"} is an '
        'MLP-Mixer: it has no attention and no position embeddings to '
        'show; visualize takes ViT and hybrid checkpoints.')
  return loaded


def _images(loaded: _Model) -> Optional[_Images]:
  """The --image files; with --workdir and none, the run's eval split."""
  if FLAGS.image:
    if FLAGS.workdir:
      from vit_jax.workdir import run as run_dir  # pylint: disable=g-import-not-at-top
      config = run_dir.load_config(FLAGS.workdir)
      images = [inference.load_image_as_run(p, config) for p in FLAGS.image]
    else:
      images = [inference.load_image(p, loaded.image_size)
                for p in FLAGS.image]
    return _Images(np.stack(images), np.arange(len(images)),
                   [os.path.basename(p) for p in FLAGS.image])
  if not FLAGS.workdir or FLAGS.num_images <= 0:
    return None
  # pylint: disable=g-import-not-at-top  (TensorFlow, for this form only)
  from vit_jax.data import input_pipeline
  from vit_jax.workdir import run as run_dir
  # pylint: enable=g-import-not-at-top
  config = run_dir.load_config(FLAGS.workdir)
  images, labels = [], []
  for batch in input_pipeline.eval_iterator(config):
    images.append(batch['image'][batch['mask']])
    labels.append(batch['label'][batch['mask']])
    if sum(map(len, images)) >= FLAGS.num_images:
      break
  images = np.concatenate(images)[:FLAGS.num_images]
  labels = np.concatenate(labels)[:FLAGS.num_images]
  rollouts = first_of_each_class(labels, FLAGS.num_rollouts)
  return _Images(images, rollouts,
                 [f'{config.eval_split} image {i}: {loaded.class_names[k]}'
                  for i, k in enumerate(labels)])


def _grey(images: np.ndarray) -> bool:
  """Whether every image has three equal channels (a grey dataset)."""
  return bool(np.all(images[..., :1] == images[..., 1:]))


def _attention_maps(loaded: _Model, images: np.ndarray, grid: Grid,
                    prefix: int, chunk: int = 64):
  """(rollouts [N, rows, cols], mean attention distance [layers, heads]),
  computed `chunk` images at a time (a large model's attention weights of
  many images would not fit in memory at once)."""
  pixels = (loaded.image_size / grid[0], loaded.image_size / grid[1])
  rollouts, distance = [], 0
  for start in range(0, len(images), chunk):
    part = images[start:start + chunk]
    weights = attention_weights(loaded.model, loaded.params, part)
    rollouts.append(attention_rollout(weights, grid, prefix))
    distance = distance + len(part) * mean_attention_distance(
        weights, grid, pixels, prefix)
  return np.concatenate(rollouts), distance / len(images)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  metrics_path = FLAGS.metrics
  if metrics_path is None and FLAGS.workdir:
    candidate = layout.path(FLAGS.workdir, layout.METRICS)
    metrics_path = str(candidate) if candidate.exists() else None
  try:
    # The cheap checks first: a bad metrics file fails before any model.
    curves = (training_curves(metrics.read(epath.Path(metrics_path)))
              if metrics_path else None)
    loaded = _from_flags()
    shown = _images(loaded)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
  except (OSError, ValueError) as e:
    sys.exit(f'error: {e}')
  config, params = loaded.config, loaded.params
  grid = models.token_grid(config, loaded.image_size)
  prefix = models.num_prefix_tokens(config)
  written = []

  def out(name):
    written.append(os.path.join(FLAGS.out_dir, name))
    return written[-1]

  posemb = params['Transformer']['posembed_input']['pos_embedding']
  plot_posemb_similarity(posemb_similarity(posemb, grid, prefix),
                         out('posemb_similarity.png'))
  if config.get('resnet') is None:
    kernel, title = np.asarray(params['embedding']['kernel']), None
    if shown is not None and _grey(shown.images):
      # Three equal channels: only each filter's sum over them acts.
      kernel = kernel.sum(axis=2, keepdims=True)
      title = 'Principal components of the patch filters (grey inputs)'
    plot_embedding_pcs(patch_embedding_pcs(kernel, FLAGS.num_pcs),
                       out('embedding_pcs.png'),
                       **({'title': title} if title else {}))
  if shown is not None:
    rollouts, distance = _attention_maps(loaded, shown.images, grid, prefix)
    picked = shown.images[shown.rollouts]
    predicted = inference.predict(loaded.model, params, picked, 1)[1][:, 0]
    for i, (k, label) in enumerate(zip(shown.rollouts, predicted)):
      guess = (loaded.class_names[label] if loaded.class_names else
               f'class {label}')
      plot_rollout(shown.images[k], rollouts[k],
                   out(f'attention_rollout_{i}.png'),
                   title=f'{shown.names[k]} (predicted: {guess})'
                   if loaded.model.num_classes else shown.names[k])
    plot_mean_attention_distance(distance, out('mean_attention_distance.png'))
  if curves:
    plot_training_curves(curves, out('training_curves.png'),
                         title=f'Training of {os.path.dirname(metrics_path)}')
  print('\n'.join(written))


if __name__ == '__main__':
  inference.define_model_flags(from_workdir=True)
  flags.DEFINE_multi_string('image', [], 'Image(s) for the attention plots.')
  flags.DEFINE_string('out_dir', None, 'Where to write the PNG files.')
  flags.DEFINE_integer('num_pcs', 28, 'Principal components to plot.')
  flags.DEFINE_string('metrics', None, 'A run\'s metrics.jsonl for '
                      'training_curves.png; default: the --workdir\'s.')
  flags.DEFINE_integer('num_images', 256, 'With --workdir and no --image: '
                       'eval images for the attention distances.')
  flags.DEFINE_integer('num_rollouts', 4, 'With --workdir and no --image: '
                       'rollouts of the first image of this many classes.')
  flags.mark_flag_as_required('out_dir')
  app.run(main, flags_parser=command_line.parse_flags)
