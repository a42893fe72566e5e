"""Fields every experiment config has, with their defaults, and arg parsing.

Each config file starts from `base_config(task)` (the classifier's by
default) and changes what it needs; any field can then be overridden on the
command line (`--config.total_steps=100`, `--config.model.hidden_size=128`).
`TASK_FIELDS` is the one table of which fields each training task reads: a
run refuses a field its task does not read, naming it.

The original release's `get_config()`, `with_dataset()`, `DATASET_PRESETS`
and `flatten()` (its configs, for its trainer's fields:
`vit_jax/original/configs.py`) are here too.
"""
import importlib.util
import os

import ml_collections
from ml_collections import config_dict

from vit_jax.configs import models as models_config
from vit_jax.models import vit as models_vit
# pylint: disable=g-importing-member,unused-import
from vit_jax.original.configs import (
    DATASET_PRESETS,
    flatten,
    get_config,
    with_dataset)


def config_file(path: str, arg=None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of the config file at `path`, as main.py would load it.

  For config files that build on another one (`configs/augreg.py` on
  `configs/finetune.py`): config files are not a package, so they reach
  each other by path, e.g. `common.config_file(os.path.join(
  os.path.dirname(__file__), 'finetune.py'))`.
  """
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f'_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


def parse_arg(arg, **defaults):
  """'variant=B/16,dataset=cifar10' -> ConfigDict over `defaults`.

  Values take the type of their default (int, float, bool or str).
  """
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not sep or key not in defaults:
      raise ValueError(f'Bad config argument {item!r}; known keys: '
                       f'{", ".join(defaults)} (as key=value,key=value).')
    kind = type(defaults[key])
    if kind is bool:
      out[key] = value.lower() in ('1', 'true', 'yes')
    else:
      out[key] = kind(value) if defaults[key] is not None else value
  return out


def model_from_variant(variant: str) -> ml_collections.ConfigDict:
  """'B/16' or a preset name such as 'R50+ViT-B_16' -> the preset config;
  a timm / transformers ViT FILE.safetensors or hub name
  (hf-hub:ORG/NAME[@REVISION]), or a plain ViT's FILE.npz (big_vision's or
  this project's layout) -> the model it describes; for an image-text
  (SigLIP, LiT) file or repository, its image tower's ViT."""
  if variant.endswith('.safetensors') or variant.startswith('hf-hub:'):
    from vit_jax import checkpoint  # pylint: disable=g-import-not-at-top
    config = checkpoint.safetensors_model_config(variant)
    if 'text_model' in config:  # SigLIP: its image tower, a classifier here.
      config = with_vit_options(ml_collections.ConfigDict(
          {**config.image.to_dict(), 'model_name': variant}))
    return config
  if variant.endswith('.npz'):  # A plain ViT's file (big_vision's too).
    from vit_jax import checkpoint  # pylint: disable=g-import-not-at-top
    from vit_jax.checkpoint import big_vision  # pylint: disable=g-import-not-at-top
    params = checkpoint.load_npz(variant)
    # A two-tower file (big_vision's SigLIP, LiT): its image tower.
    return with_vit_options(big_vision.model_config(
        params.get('img', params), model_name=variant))
  name = f'ViT-{variant.replace("/", "_")}' if '/' in variant else variant
  return models_config.get_model_config(name)


def with_vit_options(model: ml_collections.ConfigDict
                     ) -> ml_collections.ConfigDict:
  """A ViT model config with the options of models_vit at their defaults
  where unset (`posemb`, `head_zeroinit`, `transformer.stochastic_depth`:
  today's models), so that the command line can override them."""
  if 'transformer' in model:
    vit = models_vit.VisionTransformer
    for key in ('posemb', 'head_zeroinit'):
      if key not in model:
        model[key] = getattr(vit, key)
    if 'stochastic_depth' not in model.transformer:
      model.transformer.stochastic_depth = models_vit.Encoder.stochastic_depth
  return model


def base_config(task: str = 'classify') -> ml_collections.ConfigDict:
  """The fields every config of `task` has, with their defaults: the
  fields every task reads, then the task's own (`TASK_FIELDS`).

  A run refuses any field its task does not read (`train/validate.py`
  `check_fields`), so a config starts from the base of its own task.
  """
  if task not in TASK_FIELDS:
    raise ValueError(f'Unknown task {task!r}; use one of '
                     f'{", ".join(sorted(TASK_FIELDS))}.')
  config = ml_collections.ConfigDict()
  config.task = task  # Picks the training task (vit_jax/train/tasks.py).
  config.model = models_config.get_model_config('testing')

  # Data (see vit_jax/data/input_pipeline.py).
  config.dataset = 'fashion_mnist'
  config.data_dir = config_dict.placeholder(str)
  config.train_split = 'train'
  config.eval_split = 'test'
  config.image_size = 224
  config.pp = ml_collections.ConfigDict(dict(
      train='inception_crop', crop_min_area=0.08, crop_padding=4, flip=True,
      eval='resize_crop'))
  # RandAugment after the crop and flip (vit_jax/data/randaugment.py):
  # (num_layers, magnitude), e.g. (2, 10); None = off.
  config.pp.randaug = config_dict.placeholder(tuple)
  # Download and prepare a missing TFDS dataset (vit_jax/data/sources.py).
  config.tfds_download = False
  config.data_threads = 0  # Decoding threads; 0: sized to the host.

  # Loop.
  config.total_steps = 1000
  config.batch_size = 512  # Global, over all devices and processes.
  config.eval_batch_size = 512
  config.accum_steps = 1  # Micro-batches per step (gradient accumulation).
  config.seed = 0
  config.log_every = 50
  config.eval_every = 1000
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3
  config.nonfinite = 'stop'  # Or 'skip': drop the update of such a step.

  # Optimisation.
  # decoupled_weight_decay (big_vision's) and layer_decay:
  # vit_jax/train/optim.py.
  config.optimizer = ml_collections.ConfigDict(dict(
      name='adamw', b1=0.9, b2=0.999, momentum=0.9, weight_decay=0.1,
      grad_clip_norm=1.0, decoupled_weight_decay=False, layer_decay=0.0))
  config.lr = ml_collections.ConfigDict(dict(
      base=1e-3, warmup_steps=100, decay='linear', end=0.0))
  # > 0: an EMA of the params, evaluated and saved too (vit_jax/train/ema.py).
  config.ema_decay = 0.0

  # Compute layout.
  config.mesh = (('data', -1), ('fsdp', 1))
  # JAX devices on a CPU: 0 = one per core, where the batches split over
  # them (vit_jax/train/cpu_devices.py); N = exactly N.
  config.cpu_devices = 0
  TASK_FIELDS[task](config)
  return config


def _classify_fields(config: ml_collections.ConfigDict) -> None:
  """The classifier's fields (vit_jax/train/task_classify.py)."""
  # Test-time augmentation: evaluate on each image and its mirror image,
  # averaging their logits (vit_jax/evaluators/classification.py).
  config.eval_average_flips = False
  config.pretrained_path = config_dict.placeholder(str)
  # Few-shot linear eval of the pre-logits at each eval
  # (vit_jax/evaluators/fewshot.py), e.g.
  # --config.fewshot.shots="(1, 5, 10, 25)"; no shots, no few-shot eval.
  config.fewshot = ml_collections.ConfigDict(dict(
      shots=(), num_train=2000, num_test=2000))
  config.label_smoothing = 0.0
  # Mixup / CutMix in the train step (vit_jax/data/mixup.py): p is the
  # Beta(p, p) concentration of the mixing ratio; 0 = off.
  config.mixup = ml_collections.ConfigDict(dict(p=0.0))
  config.cutmix = ml_collections.ConfigDict(dict(p=0.0))
  config.dtype = 'float32'  # Compute dtype; params stay float32.
  config.remat = False  # Recompute block activations: less memory.
  # One scan over stacked block params: deep models compile several times
  # faster; the step itself ran 8% slower on CPU (benchmarks/README.md).
  config.scan = False
  # FlexiViT training: a patch size per step from these (models/flexi.py).
  config.flexi_patch_sizes = config_dict.placeholder(tuple)


def _image_text_fields(config: ml_collections.ConfigDict) -> None:
  """The image-text tasks' fields (vit_jax/train/task_lit.py,
  task_siglip.py): the image tower's checkpoint, the tokenizer, the captions
  and the zero-shot prompts. (The initial temperature and bias are the
  model's: `model.temperature_init`, `model.bias_init`.)
  """
  # A ViT .npz for the image tower, or 'random' (vit_jax/train/task_lit.py).
  config.image_checkpoint = config_dict.placeholder(str)
  # The tokenizer's vocabulary; unset: a BERT vocabulary built from the
  # captions, written to WORKDIR/vocab.txt.
  config.vocab_path = config_dict.placeholder(str)
  # Image-text pairs (vit_jax/data/captions.py): `dataset`'s class names in
  # `templates`, or real captions from `folder` / `tfds`.
  config.captions = ml_collections.ConfigDict(dict(
      templates=('a photo of a {}.',),
      folder=config_dict.placeholder(str),
      tfds=config_dict.placeholder(str), data_dir=config_dict.placeholder(str),
      split='train', image_key='image', text_key='captions/text',
      holdout=1000))
  # Zero-shot prompts (vit_jax/evaluators/zeroshot.py).
  config.zeroshot_templates = ('a photo of a {}.',)


# The fields of each training task beyond those every task reads, with
# their defaults: what `base_config(task)` adds, and all that a run of that
# task accepts (train/validate.py). A new task adds its entry here.
TASK_FIELDS = {
    'classify': _classify_fields,
    'lit': _image_text_fields,
    'siglip': _image_text_fields,
}

# Fields some configs of a task have and others not (read with
# `config.get`): accepted, never required.
OPTIONAL_FIELDS = {
    # configs/augreg.py: resolved into pretrained_path (checkpoint/augreg.py).
    # The original release's `optim_dtype` (vit_jax/original/translate.py).
    'classify': ('model_or_filename', 'pretrained_dir',
                 'optimizer.accumulator_dtype'),
}
