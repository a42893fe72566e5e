"""The original release's experiment config -> this trainer's config.

`to_project_config` is the one place where the original's fields
(`original.configs.get_config()`) are read; `train.train_and_evaluate`, the
original's input pipeline (`data`) and `python -m vit_jax.main` all go
through it. Each field is honoured or refused by name:

  dataset         a directory with {train,test}/CLASS/*.jpg -> 'imagefolder'
                  over it; else a TFDS name (downloaded and prepared if
                  needed, as the original did), read from `tfds_data_dir`
  pp.train/test   the TFDS splits (a directory's are train/ and test/)
  pp.crop         image_size; training takes an Inception crop of 5-100% of
                  the area and a random flip, eval resizes the whole image,
                  as the original's pipeline did
  pp.resize       read by neither pipeline (the original's augreg.py sets
                  it, its pipeline resizes straight to pp.crop)
  batch, batch_eval          batch_size, eval_batch_size
  base_lr, warmup_steps, decay_type ('cosine' to 0 | 'linear' to 1e-5)
                  lr.*; SGD with momentum 0.9, no weight decay
  grad_norm_clip  optimizer.grad_clip_norm
  optim_dtype     optimizer.accumulator_dtype, the momentum's dtype
  accum_steps     accum_steps (0 or None: 1)
  total_steps, eval_every, progress_every (log_every), checkpoint_every
                  (0 or None: only at the end, as the original)
  pretrained_dir + model.model_name   pretrained_path = DIR/NAME.npz
  model_or_filename                   AugReg checkpoint by name
                                      (checkpoint/augreg.py resolves it)
  model, model_type                   config.model ('ViT' | 'Mixer')
  shuffle_buffer  accepted: this pipeline shuffles every epoch completely
                  (a full permutation, `data/input_pipeline.py`), which a
                  shuffle buffer approximates
  prefetch        accepted: this pipeline prefetches 2 batches itself
  trainer         'train'; 'inference_time' runs `train.inference_time`
  tfds_manual_dir refused unless None: prepare such datasets with
                  `tfds build --manual_dir`, then pass tfds_data_dir

Anything else is an error naming the field.
"""
import os

import ml_collections

from vit_jax.configs import common

_FIELDS = ('pretrained_dir', 'dataset', 'tfds_manual_dir', 'tfds_data_dir',
           'total_steps', 'grad_norm_clip', 'optim_dtype', 'accum_steps',
           'batch', 'batch_eval', 'shuffle_buffer', 'eval_every',
           'progress_every', 'checkpoint_every', 'prefetch', 'base_lr',
           'decay_type', 'warmup_steps', 'trainer', 'model',
           'model_or_filename', 'pp', 'model_type')
_PP_FIELDS = ('train', 'test', 'crop', 'resize')
_MODEL_TYPES = {'ViT': 'transformer', 'Mixer': 'num_blocks'}
_LINEAR_END = 1e-5  # The original's 'linear' decay ends at this lr.
_MOMENTUM_DTYPES = ('bfloat16', 'float32')


def is_original(config) -> bool:
  """Whether `config` has the original's fields (`batch`, `base_lr`)
  rather than this trainer's (`batch_size`, `lr`)."""
  return 'base_lr' in config and 'batch' in config


def _refuse(field: str, why: str):
  raise ValueError(f'config.{field}: {why}')


def _every(config, field: str) -> int:
  """0 or None (never) -> only at the last step, as the original."""
  return config.get(field) or config.total_steps


def _data(config, out) -> None:
  if not config.get('dataset'):
    _refuse('dataset', 'not set: a TFDS name (cifar10) or a directory with '
            '{train,test}/CLASS/*.jpg.')
  if config.get('tfds_manual_dir') is not None:
    _refuse('tfds_manual_dir', 'this trainer reads prepared TFDS datasets: '
            'run `tfds build NAME --manual_dir=DIR --data_dir=DATA` once, '
            'then set tfds_data_dir=DATA and tfds_manual_dir=None.')
  pp = config.get('pp') or {}
  unknown = sorted(set(pp.keys()) - set(_PP_FIELDS))
  if unknown:
    _refuse(f'pp.{unknown[0]}', f'unknown preprocessing field; the original '
            f'config has pp.{", pp.".join(_PP_FIELDS)}.')
  if not pp.get('crop'):
    _refuse('pp.crop', 'not set: the image size, e.g. 224.')
  if os.path.isdir(config.dataset):
    out.dataset = 'imagefolder'
    out.data_dir = config.dataset
    out.train_split, out.eval_split = 'train', 'test'
  else:
    for key in ('train', 'test'):
      if not pp.get(key):
        _refuse(f'pp.{key}', f'not set: the TFDS split to {key} on.')
    out.dataset = config.dataset
    out.data_dir = config.get('tfds_data_dir')
    out.train_split, out.eval_split = pp['train'], pp['test']
    out.tfds_download = True  # As the original's download_and_prepare.
  out.image_size = pp['crop']
  out.pp.train = 'inception_crop'
  out.pp.crop_min_area = 0.05
  out.pp.flip = True
  out.pp.eval = 'resize'
  out.batch_size = config.batch
  out.eval_batch_size = config.get('batch_eval') or config.batch
  if config.get('shuffle_buffer') is not None and config.shuffle_buffer <= 0:
    _refuse('shuffle_buffer', f'{config.shuffle_buffer} must be positive.')


def _model(config, out) -> None:
  model = config.get('model')
  if not model:
    _refuse('model', 'not set: a preset of vit_jax/configs/models.py, e.g. '
            'models.get_b16_config().')
  model_type = config.get('model_type', 'ViT')
  if model_type not in _MODEL_TYPES:
    _refuse('model_type', f'{model_type!r} is not one of {list(_MODEL_TYPES)}.')
  if _MODEL_TYPES[model_type] not in model:
    _refuse('model_type', f'{model_type!r} does not match config.model '
            f'({model.get("model_name")}).')
  out.model = ml_collections.ConfigDict(model.to_dict())
  if config.get('model_or_filename'):
    out.model_or_filename = config.model_or_filename
    out.pretrained_dir = config.pretrained_dir
  else:
    if not model.get('model_name'):
      _refuse('model.model_name', 'not set: the checkpoint is '
              'pretrained_dir/MODEL_NAME.npz.')
    out.pretrained_path = os.path.join(config.pretrained_dir,
                                       f'{model.model_name}.npz')


def _optimizer(config, out) -> None:
  out.optimizer.name = 'sgd'
  out.optimizer.momentum = 0.9
  out.optimizer.weight_decay = 0.0
  out.optimizer.grad_clip_norm = config.grad_norm_clip
  dtype = config.get('optim_dtype', 'float32')
  if dtype not in _MOMENTUM_DTYPES:
    _refuse('optim_dtype', f'{dtype!r} is not one of {_MOMENTUM_DTYPES}.')
  out.optimizer.accumulator_dtype = dtype
  out.lr.base = config.base_lr
  out.lr.warmup_steps = config.warmup_steps
  if config.decay_type == 'cosine':
    out.lr.decay, out.lr.end = 'cosine', 0.0
  elif config.decay_type == 'linear':
    out.lr.decay, out.lr.end = 'linear', _LINEAR_END / config.base_lr
  else:
    _refuse('decay_type', f"{config.decay_type!r}: use 'cosine' or 'linear'.")


def to_project_config(config, *, data_only: bool = False
                      ) -> ml_collections.ConfigDict:
  """This trainer's config for original config `config` (module docstring).

  `data_only`: only the data fields (dataset, pp, batch sizes), for the
  original's input pipeline, whose configs need no model.

  Raises:
    ValueError: naming a field this trainer cannot honour, or that is unset.
  """
  out = common.base_config()
  unknown = sorted(set(config.keys()) - set(_FIELDS))
  if unknown:
    _refuse(unknown[0], 'not a field of the original config (configs/'
            'common.py); this trainer cannot honour it.')
  _data(config, out)
  if data_only:
    return out
  if config.get('trainer', 'train') != 'train':
    _refuse('trainer', f"{config.trainer!r}: train_and_evaluate trains "
            "('train'); 'inference_time' is train.inference_time.")
  if not config.get('total_steps'):
    _refuse('total_steps', 'not set (with_dataset() sets it for its '
            'datasets).')
  _model(config, out)
  _optimizer(config, out)
  out.total_steps = config.total_steps
  out.accum_steps = config.get('accum_steps') or 1
  out.log_every = _every(config, 'progress_every')
  out.eval_every = _every(config, 'eval_every')
  out.checkpoint_every = _every(config, 'checkpoint_every')
  out.seed = 0  # The original's PRNGKey(0).
  return out
