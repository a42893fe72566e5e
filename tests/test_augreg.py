"""AugReg checkpoints by name: the name table, the index, the choice of
file, every error, and main.py fine-tuning one (all offline, from files
made here)."""
import json

from etils import epath
import jax
import ml_collections
import numpy as np
import pandas as pd
import pytest

from configs import augreg as augreg_config
from tests.conftest import run_main, train_in_process
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.checkpoint import augreg
from vit_jax.configs import models as models_config
from vit_jax.train import validate

_STEM = 'Ti_16-{ds}-300ep-lr_0.001-aug_{aug}-wd_0.03-do_0.0-sd_0.0'
# (ds, aug, final_val): the best i21k run is aug_light1; an i1k run scores
# higher but is not ImageNet-21k.
_RUNS = [('i21k', 'none', 0.40), ('i21k', 'light1', 0.45),
         ('i21k', 'medium2', 0.43), ('i1k', 'strong1', 0.90)]
BEST = _STEM.format(ds='i21k', aug='light1')


def write_index(directory, runs=_RUNS, extra=()):
  """index.csv with the original's columns: two fine-tunings per run."""
  rows = []
  for ds, aug, final_val in runs:
    for adapt_ds in ('cifar100', 'oxford_pet'):
      filename = _STEM.format(ds=ds, aug=aug)
      row = dict.fromkeys(augreg.INDEX_COLUMNS, 0)
      row.update(name='Ti/16', ds=ds, aug=aug, final_val=final_val,
                 best_val=final_val + 0.01, adapt_ds=adapt_ds,
                 filename=filename,
                 adapt_filename=f'{filename}--{adapt_ds}-steps_2k-lr_0.01'
                 '-res_384')
      rows.append(row)
  rows += list(extra)
  pd.DataFrame(rows, columns=augreg.INDEX_COLUMNS).to_csv(
      directory / 'index.csv', index=False)
  return directory


def test_names_are_derived_from_the_presets():
  configs = models_config.augreg_configs()
  for name in ('R_Ti_16', 'Ti_16', 'S_16', 'B_16', 'L_16', 'S_32', 'B_32',
               'B_8', 'R26_S_32', 'R50_L_32'):
    preset = models_config.MODEL_CONFIGS[
        'R26+ViT-S_32' if name == 'R26_S_32' else
        'R50+ViT-L_32' if name == 'R50_L_32' else
        'R+ViT-Ti_16' if name == 'R_Ti_16' else f'ViT-{name}']
    assert configs[name] is preset
  # As the original: no Mixer, no testing model, none without AugReg files.
  assert not {'ViT-L_32', 'L_32', 'H_14', 'R50_B_16', 'testing'} & set(configs)
  assert all(models_config.augreg_name(c.model_name) == n
             for n, c in configs.items())


def test_config_from_name_and_file_name():
  config = augreg_config.get_config('R26_S_32')
  assert config.model.to_dict() == {
      **models_config.MODEL_CONFIGS['R26+ViT-S_32'].to_dict()}
  assert config.model_or_filename == 'R26_S_32'
  assert config.pretrained_dir == 'gs://vit_models/augreg'
  assert config.dataset == '' and config.pretrained_path is None
  config = augreg_config.get_config(
      'L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1')
  assert config.model.model_name == 'ViT-L_16'
  assert config.model.transformer.dropout_rate == 0.0  # The preset has 0.1.
  with pytest.raises(ValueError, match=r"Unknown AugReg model 'X_16'.*R_Ti_16"):
    augreg_config.get_config('X_16')


def test_index_is_a_dataframe_with_the_original_columns(tmp_path):
  df = augreg.read_index(str(write_index(tmp_path)))
  assert tuple(df.columns) == augreg.INDEX_COLUMNS
  assert len(df) == 8
  assert list(augreg.rows_of(df, 'Ti_16').aug.unique()) == [
      'none', 'light1', 'medium2', 'strong1']
  assert augreg.rows_of(df, 'S_16').empty


def _config(name, directory, dataset='cifar10'):
  config = augreg_config.get_config(name)
  config.pretrained_dir = str(directory)
  config.dataset = dataset
  return config


def test_choice_by_name_and_by_file_name(tmp_path):
  write_index(tmp_path)
  for _, aug, _ in _RUNS:
    np.savez(tmp_path / f'{_STEM.format(ds="i21k", aug=aug)}.npz',
             x=np.zeros(2))
  config = _config('Ti_16', tmp_path)
  resolved = augreg.resolve(config)
  assert resolved.pretrained_path == str(tmp_path / f'{BEST}.npz')
  assert config.pretrained_path is None  # The input is left as it was.
  assert augreg.best_filename(augreg.read_index(str(tmp_path)), 'Ti_16') == (
      BEST, 0.45)
  other = _STEM.format(ds='i21k', aug='none')
  assert augreg.resolve(_config(other, tmp_path)).pretrained_path == str(
      tmp_path / f'{other}.npz')
  # A config without an AugReg name is returned as it is.
  plain = ml_collections.ConfigDict(dict(dataset='x', pretrained_path=None))
  assert augreg.resolve(plain) is plain


def test_errors(tmp_path):
  # No dataset: the first thing checked.
  with pytest.raises(ValueError, match='config.dataset, which is not set'):
    augreg.resolve(_config('Ti_16', tmp_path, dataset=''))
  # Both a name and a path.
  config = _config('Ti_16', tmp_path)
  config.pretrained_path = 'x.npz'
  with pytest.raises(ValueError, match='set only one'):
    augreg.resolve(config)
  # No index.
  with pytest.raises(FileNotFoundError, match='index.csv.*does not exist'):
    augreg.resolve(_config('Ti_16', tmp_path))
  # An unreadable index, and one that is no AugReg index.
  (tmp_path / 'index.csv').write_bytes(b'\xff\xfe\x00garbage\x00')
  with pytest.raises(ValueError, match='not a readable CSV'):
    augreg.resolve(_config('Ti_16', tmp_path))
  (tmp_path / 'index.csv').write_text('a,b\n1,2\n')
  with pytest.raises(ValueError, match='lacks the column.*ds, final_val'):
    augreg.resolve(_config('Ti_16', tmp_path))
  # No i21k row for the model (S_16 is not in the index at all).
  write_index(tmp_path)
  with pytest.raises(ValueError, match="no ImageNet-21k .* of 'S_16'.*Ti_16"):
    augreg.resolve(_config('S_16', tmp_path))
  # The chosen checkpoint is missing, by name and by file name.
  with pytest.raises(FileNotFoundError, match=f'{BEST}.npz.*does not exist'):
    augreg.resolve(_config('Ti_16', tmp_path))
  with pytest.raises(FileNotFoundError, match='aug_x.*does not exist'):
    augreg.resolve(_config(_STEM.format(ds='i21k', aug='x'), tmp_path))
  # Unreadable: the trainer's validation reads its headers before compiling.
  (tmp_path / f'{BEST}.npz').write_bytes(b'PK\x03\x04 truncated')
  config = augreg.resolve(_config('Ti_16', tmp_path))
  with pytest.raises(ValueError, match='not a readable .npz'):
    validate._check_pretrained(config, {})  # pylint: disable=protected-access


def _tiny_ti16():
  """Ti/16 cut to one block, as a checkpoint pre-trained at 224 px."""
  config = augreg.model_config('Ti_16')
  config.transformer.num_layers = 1
  model = models.create(config, 10)
  return model.init(jax.random.PRNGKey(0), np.zeros((1, 224, 224, 3)),
                    train=False)['params']


def test_main_finetunes_by_name(tmp_path, image_folder, capsys):
  """configs/augreg.py:Ti_16 (one block) from a local pretrained_dir: the
  best i21k file is chosen and logged, its position embeddings resized from
  14x14 to 2x2 for 32 px, a new 3-class head (main.py's run, in this
  process)."""
  pretrained = tmp_path / 'augreg'
  pretrained.mkdir()
  write_index(pretrained)
  checkpoint.save_npz(str(pretrained / f'{BEST}.npz'), _tiny_ti16())
  workdir = tmp_path / 'work'
  train_in_process(
      workdir, image_folder, f'--config.pretrained_dir={pretrained}',
      '--config.model.transformer.num_layers=1', '--config.image_size=32',
      '--config.batch_size=8', '--config.eval_batch_size=8',
      '--config.total_steps=2', '--config.log_every=1',
      '--config.lr.warmup_steps=1', '--config.eval_split=test',
      '--config.pp.train=resize', '--config.pp.eval=resize',
      config='configs/augreg.py:Ti_16')
  assert f'selected {BEST} for Ti_16' in capsys.readouterr().err
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['pretrained_path'] == str(pretrained / f'{BEST}.npz')
  params = checkpoint.load_npz(str(workdir / 'params.npz'))
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 5, 192)
  assert params['head']['kernel'].shape == (192, 3)


def test_main_errors_are_one_line(tmp_path):
  """A config-file error from main.py (augreg.resolve's errors are checked
  in-process by test_errors; main.py prints them as test_reliability's
  process cases show)."""
  proc = run_main(tmp_path / 'b', None, config='configs/augreg.py:Q_16')
  assert proc.returncode != 0
  assert proc.stderr.startswith('error: ')  # main.py's config-file error.
  assert "Unknown AugReg model 'Q_16'" in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_unreachable_directory_is_one_error(tmp_path, monkeypatch):
  """Remote file systems raise their own errors (tf.errors when offline):
  they become an OSError that says what to do (no network touched here)."""

  def unreachable(self):
    raise RuntimeError(f'Could not resolve host for {self}\nmore detail')

  monkeypatch.setattr(type(epath.Path(tmp_path)), 'exists', unreachable)
  with pytest.raises(OSError, match=r"Cannot reach .*index.csv.*\(RuntimeError"
                     r": Could not resolve host .*\). Offline, copy"):
    augreg.read_index(str(tmp_path))
