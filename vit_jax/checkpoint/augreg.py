"""AugReg checkpoints ("How to train your ViT?", Steiner et al., arXiv
2106.10270), chosen by name as in the original release.

`gs://vit_models/augreg` holds a pre-trained checkpoint `{filename}.npz` for
every pre-training run (model, data set, learning rate, augmentation, weight
decay, dropout, stochastic depth) and its fine-tuned ones; `index.csv` there
describes them, one row per fine-tuning (`read_index`). A file name starts
with the model's AugReg name (`R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-
do_0.0-sd_0.0`): a preset name spelled URI-safe (`configs.models.augreg_name`).

`configs/augreg.py:NAME` takes either a model name (`R_Ti_16`: the ImageNet-
21k checkpoint with the best `final_val`, as the original picks it) or a full
file name (it has a '-'); `resolve` turns that into `config.pretrained_path`
when training starts, so `--config.pretrained_dir` overrides still apply.
"""
import contextlib
import os
import sys
from typing import Tuple

from etils import epath
import jax
import ml_collections
import pandas as pd

from vit_jax.configs import models as models_config

DEFAULT_DIR = 'gs://vit_models/augreg'

# The columns of index.csv (see the original's `checkpoint.get_augreg_df`):
# name (as in the paper, e.g. "R26+S/32"), ds (pre-training data: "i1k",
# "i21k", "i21k_30"), lr, aug, wd, do, sd (pre-training settings), best_val,
# final_val, final_test (pre-training accuracies), adapt_ds, adapt_lr,
# adapt_steps, adapt_resolution, adapt_final_val, adapt_final_test (the
# fine-tuning), params, infer_samples_per_sec, filename (the pre-trained
# checkpoint) and adapt_filename (the fine-tuned one).
INDEX_COLUMNS = ('name', 'ds', 'lr', 'aug', 'wd', 'do', 'sd', 'best_val',
                 'final_val', 'final_test', 'adapt_ds', 'adapt_lr',
                 'adapt_steps', 'adapt_resolution', 'adapt_final_val',
                 'adapt_final_test', 'params', 'infer_samples_per_sec',
                 'filename', 'adapt_filename')
# What choosing a checkpoint by model name needs.
_NEEDED_COLUMNS = ('ds', 'final_val', 'filename')


def model_of(model_or_filename: str) -> str:
  """'R_Ti_16-i21k-300ep-...' or 'R_Ti_16' -> 'R_Ti_16'."""
  return model_or_filename.split('-')[0]


def model_config(model_or_filename: str) -> ml_collections.ConfigDict:
  """An editable copy of the preset config an AugReg name or file name is
  made of; a clear error listing the known names otherwise."""
  configs = models_config.augreg_configs()
  name = model_of(model_or_filename)
  if name not in configs:
    raise ValueError(f'Unknown AugReg model {name!r} (from '
                     f'{model_or_filename!r}). Known AugReg models: '
                     f'{", ".join(configs)}.')
  return ml_collections.ConfigDict(configs[name].to_dict())


@contextlib.contextmanager
def _reaching(path: str):
  """Remote file systems (tf.io.gfile under etils) raise their own errors,
  e.g. offline; as an OSError they end in one `error:` line in main.py."""
  try:
    yield
  except (OSError, ValueError):
    raise
  except Exception as e:  # pylint: disable=broad-except
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else ''
    raise OSError(f'Cannot reach {path!r} ({type(e).__name__}: {first_line}).'
                  ' Offline, copy index.csv and the .npz files you need into '
                  'a directory and set --config.pretrained_dir to it.') from e


def read_index(directory: str = DEFAULT_DIR) -> pd.DataFrame:
  """`directory`/index.csv as a DataFrame with the columns of INDEX_COLUMNS.

  Browse it in a notebook, e.g. the i21k B/16 runs, best first:
    df = read_index()
    df.query('ds == "i21k" and name == "B/16"').sort_values(
        'final_val', ascending=False)
  """
  path = epath.Path(directory) / 'index.csv'
  with _reaching(os.fspath(path)):
    if not path.exists():
      raise FileNotFoundError(
          f'AugReg index {os.fspath(path)!r} does not exist; set '
          '--config.pretrained_dir to the directory that holds index.csv and '
          f'the .npz files (default {DEFAULT_DIR}).')
  try:
    with _reaching(os.fspath(path)), path.open() as f:
      df = pd.read_csv(f)
  except (ValueError, UnicodeDecodeError) as e:  # ParserError too.
    raise ValueError(f'AugReg index {os.fspath(path)!r} is not a readable '
                     f'CSV file ({type(e).__name__}: {e}).') from e
  missing = [c for c in _NEEDED_COLUMNS if c not in df.columns]
  if missing:
    raise ValueError(f'AugReg index {os.fspath(path)!r} lacks the column(s) '
                     f'{", ".join(missing)}; is it the AugReg index.csv?')
  return df


def rows_of(df: pd.DataFrame, name: str) -> pd.DataFrame:
  """The index rows of AugReg model `name` (e.g. 'R_Ti_16')."""
  return df[df.filename.map(model_of) == name]


def best_filename(df: pd.DataFrame, name: str) -> Tuple[str, float]:
  """(filename, final_val) of model `name`'s ImageNet-21k checkpoint with
  the best final validation accuracy, the original's default choice."""
  rows = rows_of(df, name)
  rows = rows[rows.ds == 'i21k']
  if rows.empty:
    raise ValueError(
        f'The AugReg index has no ImageNet-21k (ds == "i21k") checkpoint of '
        f'{name!r}; pass a full file name instead (models in the index: '
        f'{", ".join(sorted(set(df.filename.map(model_of))))}).')
  best = rows.loc[rows.final_val.idxmax()]
  return best.filename, float(best.final_val)


# AugReg model name -> timm's name of it. timm's `.augreg_in21k` repo of each
# holds AugReg's recommended ImageNet-21k checkpoint (the one its paper and
# timm pick), converted: the hub copy when gs://vit_models cannot be read.
TIMM_NAMES = {
    'Ti_16': 'vit_tiny_patch16_224', 'S_16': 'vit_small_patch16_224',
    'B_16': 'vit_base_patch16_224', 'L_16': 'vit_large_patch16_224',
    'B_8': 'vit_base_patch8_224', 'S_32': 'vit_small_patch32_224',
    'B_32': 'vit_base_patch32_224', 'R_Ti_16': 'vit_tiny_r_s16_p8_224',
    'R26_B_32': 'vit_base_r26_s32_224', 'R26_S_32': 'vit_small_r26_s32_224',
    'R50_L_32': 'vit_large_r50_s32_224'}


def hub_name(model: str) -> str:
  """The hub copy of AugReg's recommended checkpoint of `model`."""
  return f'hf-hub:timm/{TIMM_NAMES[model]}.augreg_in21k'


def _bucket_unreadable(directory: str):
  """Why the published bucket cannot be read (None: it can). Since February
  2026 it refuses anonymous reads (HTTP 403)."""
  from vit_jax import remote  # pylint: disable=g-import-not-at-top
  try:
    remote.check(os.path.join(directory, 'index.csv'), 'AugReg index')
  except remote.RemotePathError as e:
    return str(e)
  return None


def checkpoint_path(model_or_filename: str,
                    directory: str = DEFAULT_DIR) -> str:
  """The .npz in `directory` that a model name (best i21k) or a full file
  name (without .npz) stands for; it must exist. A model name whose
  `directory` is the unreadable bucket: the hub copy (`hub_name`)."""
  model_config(model_or_filename)  # A known model, or a clear error.
  if '-' in model_or_filename:
    filename = model_or_filename
  else:
    why = _bucket_unreadable(directory) if directory == DEFAULT_DIR else None
    if why:
      name = hub_name(model_or_filename)
      if jax.process_index() == 0:
        print(f'AugReg: {DEFAULT_DIR} cannot be read ({why}); taking the hub'
              f' copy of its recommended {model_or_filename} checkpoint, '
              f'{name}.', file=sys.stderr, flush=True)
      return name
    filename, final_val = best_filename(read_index(directory),
                                        model_or_filename)
    # On the console too (the quiet console hides INFO logs): which of the
    # model's many checkpoints the run starts from.
    if jax.process_index() == 0:
      print(f'AugReg: selected {filename} for {model_or_filename} (best i21k '
            f'final_val={final_val:.4f}).', file=sys.stderr, flush=True)
  path = os.path.join(directory, f'{filename}.npz')
  with _reaching(path):
    found = epath.Path(path).exists()
  if not found:
    raise FileNotFoundError(
        f'AugReg checkpoint {path!r} does not exist; check the name, or set '
        '--config.pretrained_dir to the directory that holds it.')
  return path


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with `pretrained_path` set from `config.model_or_filename`
  (configs/augreg.py); other configs are returned as they are.

  Raises ValueError / FileNotFoundError, before anything is built, for no
  dataset, both a name and a path, an unknown model, no index row, and a
  missing index or checkpoint (`validate` then reads the file's headers).
  """
  name = config.get('model_or_filename')
  if not name:
    return config
  if not config.get('dataset'):
    raise ValueError(f'configs/augreg.py:{name} fine-tunes on config.dataset, '
                     'which is not set: add --config.dataset=NAME (a TFDS '
                     'name, or imagefolder with --config.data_dir=DIR).')
  if config.get('pretrained_path'):
    raise ValueError(f'Both config.model_or_filename={name!r} and '
                     f'config.pretrained_path={config.pretrained_path!r} name'
                     ' a checkpoint; set only one.')
  path = checkpoint_path(name, config.pretrained_dir)
  config = config.copy_and_resolve_references()
  config.pretrained_path = path
  return config
