"""The original release's experiment configs (its `configs/common.py`,
`vit.py`, `augreg.py`, `inference_time.py`): the same fields and defaults, so
that code and command lines written for it build the same config.

`translate.to_project_config` turns one into this trainer's config.
"""
from typing import Any, Dict, Iterable, Tuple, Union

import ml_collections

from vit_jax.configs import models as models_config


def get_config() -> ml_collections.ConfigDict:
  """The original's `common.get_config()`: every field but the model's
  (`translate.py` says how this trainer reads each)."""
  config = ml_collections.ConfigDict()
  config.pretrained_dir = '.'  # Holds MODEL_NAME.npz.
  config.dataset = ''  # TFDS name, or a dir of {train,test}/CLASS/*.jpg.
  config.tfds_manual_dir = None
  config.tfds_data_dir = None
  config.total_steps = None
  config.grad_norm_clip = 1.0
  config.optim_dtype = 'bfloat16'  # The SGD momentum's dtype.
  config.accum_steps = 8
  config.batch = 512
  config.batch_eval = 512
  config.shuffle_buffer = 50_000
  config.eval_every = 100
  config.progress_every = 10
  config.checkpoint_every = 1_000
  config.prefetch = 2
  config.base_lr = 0.03
  config.decay_type = 'cosine'
  config.warmup_steps = 500
  config.trainer = 'train'  # Or 'inference_time'.
  config.model = None  # A preset of configs.models.
  config.model_or_filename = None  # augreg.py configs only.
  config.dataset = None  # Set by `with_dataset()` or by hand.
  config.pp = None
  return config.lock()


# A part of each train split is left out, for validation.
DATASET_PRESETS = {
    name: ml_collections.ConfigDict({
        'total_steps': steps,
        'pp': ml_collections.ConfigDict(
            {'train': train, 'test': test, 'crop': 384})})
    for name, steps, train, test in [
        ('cifar10', 10_000, 'train[:98%]', 'test'),
        ('cifar100', 10_000, 'train[:98%]', 'test'),
        ('imagenet2012', 20_000, 'train[:99%]', 'validation')]
}


def with_dataset(config: ml_collections.ConfigDict,
                 dataset: str) -> ml_collections.ConfigDict:
  """An unlocked copy of `config` set up for `dataset` (`DATASET_PRESETS`)."""
  if dataset not in DATASET_PRESETS:
    raise ValueError(f'No preset for dataset {dataset!r}; presets: '
                     f'{", ".join(DATASET_PRESETS)} (or set config.dataset, '
                     'config.pp and config.total_steps yourself).')
  config = ml_collections.ConfigDict(config.to_dict())
  config.dataset = dataset
  # A copy: ConfigDict.update shares the preset's nested `pp` otherwise.
  config.update(DATASET_PRESETS[dataset].copy_and_resolve_references())
  return config


def flatten(config: Union[ml_collections.ConfigDict, Dict[str, Any]],
            prefix: Tuple[str, ...] = ('config',)
            ) -> Iterable[Tuple[str, Any]]:
  """('config.a.b', value) for every leaf of `config` (for sweeps)."""
  for key, value in config.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      yield from flatten(value, prefix + (key,))
    else:
      yield '.'.join(prefix + (key,)), value


def vit_config(model_dataset: str) -> ml_collections.ConfigDict:
  """`configs/vit.py:b16,cifar10`: fine-tunes preset `get_b16_config()` on
  a dataset of `DATASET_PRESETS`."""
  model, sep, dataset = model_dataset.partition(',')
  if not sep:
    raise ValueError(f'configs/vit.py:{model_dataset}: the argument is '
                     'MODEL,DATASET, e.g. b16,cifar10.')
  config = with_dataset(get_config(), dataset)
  config.model = getattr(models_config, f'get_{model}_config')()
  if model == 'b16' and dataset == 'cifar10':
    config.base_lr = 0.01
  return config


def augreg_config(model_or_filename: str) -> ml_collections.ConfigDict:
  """`configs/augreg.py:R_Ti_16` (the best i21k checkpoint of that model) or
  `:FILENAME` (that checkpoint); config.dataset must then be set."""
  config = get_config()
  config.pretrained_dir = 'gs://vit_models/augreg'
  config.model_or_filename = model_or_filename
  model = model_or_filename.split('-')[0]
  if model not in models_config.AUGREG_CONFIGS:
    raise ValueError(f'Unknown AugReg model {model!r}; known: '
                     f'{", ".join(sorted(models_config.AUGREG_CONFIGS))}.')
  config.model = models_config.AUGREG_CONFIGS[
      model].copy_and_resolve_references()
  config.model.transformer.dropout_rate = 0  # No AugReg when fine-tuning.
  config.base_lr = 0.03
  config.total_steps = 500
  config.warmup_steps = 100
  config.pp = ml_collections.ConfigDict(
      {'train': 'train', 'test': 'test', 'resize': 448, 'crop': 384})
  config.dataset = ''  # Must be set on the command line.
  return config


def inference_time_config() -> ml_collections.ConfigDict:
  """`configs/inference_time.py`: times the forward pass of a preset."""
  config = ml_collections.ConfigDict()
  config.model_name = 'ViT-B_32'
  config.log_dir = '.'
  config.steps = 30  # Timed steps,
  config.initial_steps = 10  # after these.
  config.batch = 0
  config.num_classes = 0
  config.image_size = 0
  config.trainer = 'inference_time'
  return config
