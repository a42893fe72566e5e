"""Never lose a run: non-finite loss, bad input. (Kill -9 and a truncated
checkpoint: test_preemption.py.)"""
import os
import time

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest

from configs import testing
from tests.conftest import ROOT, read_records, run_main, write_image_folder
from vit_jax.checkpoint import augreg
from vit_jax.train import cpu_devices
from vit_jax.train import tasks
from vit_jax.train import validate


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path,
                                                        image_folder):
  """main.py stops at the first NaN loss with one error line, the step-1
  checkpoint kept; with nonfinite='skip' (in this process) the run skips
  such steps and ends with finite params."""
  args = ('--config.lr.base=1e30', '--config.lr.warmup_steps=0',
          '--config.optimizer.grad_clip_norm=0', '--config.checkpoint_every=1',
          '--config.log_every=10', '--config.total_steps=3')
  proc = run_main(tmp_path / 'stop', image_folder, *args)
  assert proc.returncode == 1
  assert 'Non-finite training loss at step 2' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert os.listdir(tmp_path / 'stop' / 'checkpoints') == ['1']

  config = testing.get_config()
  config.update(dataset='imagefolder', data_dir=str(image_folder),
                total_steps=3, nonfinite='skip')
  config.lr.update(base=1e30, warmup_steps=0)
  config.optimizer.grad_clip_norm = 0
  tasks.train_and_evaluate(config, str(tmp_path / 'skip'))
  losses = [r['train/loss'] for r in read_records(tmp_path / 'skip')
            if 'train/loss' in r]
  assert len(losses) == 3 and not np.isfinite(losses).all(), losses
  with np.load(tmp_path / 'skip' / 'params.npz') as params:
    assert all(np.isfinite(params[k]).all() for k in params.files)


def _bad_folder(root):
  write_image_folder(root, num_train=6, num_eval=3)
  (root / 'train' / 'class0' / 'broken.png').write_bytes(b'\x89PNG not really')
  return root


def _corrupt_npz(root):
  path = root / 'corrupt.npz'
  path.write_bytes(b'PK\x03\x04 truncated')
  return path


def _other_model_npz(root):
  from vit_jax import checkpoint, models  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  model = models.get_model('testing', num_classes=3)
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)),
                      train=False)['params']
  path = root / 'other.npz'
  checkpoint.save_npz(str(path), params)
  return path


# (overrides, devices, what the message must say). `{tmp}` is the test's
# tmp_path; `{bad_folder}`, `{corrupt}`, `{other}` are files made for it.
# main.py turns each into one `error:` line and exit 1 (exit 2 for flag and
# config-file errors); `_PROCESS_CASES` prove that path end to end in a
# process of its own, the others are checked in this process.
_CASES = {
    'unknown config file': (['--config=configs/nope.py'], 1, 'nope.py'),
    'unknown field': (['--config.nosuchfield=1'], 1,
                      "unknown config field 'nosuchfield'"),
    'unknown preset': (['--config=configs/finetune.py:model=ViT-Q_7'], 1,
                       "Unknown model 'ViT-Q_7'"),
    'unknown dataset': (['--config.dataset=no_such_dataset_xyz'], 1,
                        'no_such_dataset_xyz'),
    'heads': (['--config.model.hidden_size=15'], 1,
              'hidden_size=15 is not divisible by num_heads=2'),
    'patch': (['--config.image_size=18'], 1,
              'not divisible by the patch size 4x4'),
    'batch vs devices': (['--config.batch_size=12'], 8,
                         'batch_size=12 does not split evenly over 8 devices'),
    'batch vs cpu devices': (['--config.cpu_devices=3'], 1,
                             'over 3 devices in 1 process(es); use a multiple'
                             ' of 3. On a CPU, --config.cpu_devices=N sets'),
    'cpu devices': (['--config.cpu_devices=-1'], 1,
                    'cpu_devices=-1: use 0 (one per core)'),
    'batch vs accum': (['--config.accum_steps=3'], 1,
                       'multiple of accum_steps'),
    'steps': (['--config.total_steps=0'], 1, 'total_steps=0 must be positive'),
    'batch': (['--config.batch_size=-4'], 1, 'batch_size=-4 must be positive'),
    'missing pretrained': (['--config.pretrained_path={tmp}/nope.npz'], 1,
                           'nope.npz'),
    'corrupt pretrained': (['--config.pretrained_path={corrupt}'], 1,
                           'truncated or corrupt'),
    'mismatched pretrained': (
        ['--config.pretrained_path={other}'], 1,
        'shape mismatch: Transformer/posembed_input/pos_embedding checkpoint '
        '(1, 5, 10) vs model (1, 17, 16)'),
    'unreadable image': (['--config.data_dir={bad_folder}'], 1, 'broken.png'),
    'unwritable workdir': ([], 1, 'cannot be written'),
}
# The flag parser's own message (exit 2), and an error raised once the
# checkpoint is loaded, after the up-front checks (exit 1).
_PROCESS_CASES = ('unknown field', 'mismatched pretrained')
# Errors of the --config flag itself: main.py prints any exception of its
# flag parsing as one line, with exit 2.
_FLAG_CASES = ('unknown config file', 'unknown preset')


def _case_args(case, tmp_path):
  """The case's workdir (with a file that must survive), config file and
  --config overrides."""
  overrides, devices, expected = _CASES[case]
  makers = {'bad_folder': lambda: _bad_folder(tmp_path / 'bad'),
            'corrupt': lambda: _corrupt_npz(tmp_path),
            'other': lambda: _other_model_npz(tmp_path)}
  files = {name: make() for name, make in makers.items()  # The case's only.
           if any(f'{{{name}}}' in o for o in overrides)}
  overrides = [o.format(tmp=tmp_path, **files) for o in overrides]
  workdir = tmp_path / 'workdir'
  workdir.mkdir()
  (workdir / 'keep.txt').write_text('precious')
  if case == 'unwritable workdir':
    workdir = workdir / 'keep.txt' / 'sub'  # Not creatable below a file.
  config = 'configs/testing.py'
  for o in [o for o in overrides if o.startswith('--config=')]:
    overrides.remove(o)
    config = o[len('--config='):]
  return workdir, config, overrides, devices, expected


def _checks_in_process(config_file, overrides, data_dir, workdir, devices):
  """What main.py runs before training, in this process: the --config flag
  and its overrides (a FlagValues of its own, not absl's global one), the
  CPU device count, then the trainer's up-front checks for `devices`."""
  argv = ['main.py', f'--config={ROOT / config_file}',
          '--config.dataset=imagefolder', f'--config.data_dir={data_dir}',
          *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  config = flag_values.config
  if config.get('cpu_devices', 0) < 0:
    cpu_devices.configure(config)  # Raises before it sets a device count.
  validate.validate(augreg.resolve(config), workdir=str(workdir),
                    num_devices=config.get('cpu_devices') or devices,
                    num_processes=1)


@pytest.mark.parametrize('case', [c for c in _CASES
                                  if c not in _PROCESS_CASES])
def test_bad_input_is_refused_up_front(case, tmp_path, image_folder):
  """The exception main.py prints as its `error:` line, raised by the checks
  that run before anything is built."""
  workdir, config, overrides, devices, expected = _case_args(case, tmp_path)
  errors = Exception if case in _FLAG_CASES else (ValueError, OSError)
  start = time.time()
  with pytest.raises(errors) as error:
    _checks_in_process(config, overrides, image_folder, workdir, devices)
  assert expected in str(error.value)
  assert (tmp_path / 'workdir' / 'keep.txt').read_text() == 'precious'
  assert time.time() - start < 60


@pytest.mark.parametrize('case', _PROCESS_CASES)
def test_bad_input_gives_one_clear_message(case, tmp_path, image_folder):
  """main.py end to end: one `error:` line, no traceback, nothing lost."""
  workdir, config, overrides, devices, expected = _case_args(case, tmp_path)
  proc = run_main(workdir, image_folder, *overrides, devices=devices,
                  config=config)
  assert proc.returncode == {'unknown field': 2}.get(case, 1)
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  # One error (its message may list details on the lines below it).
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and expected in proc.stderr, proc.stderr[-3000:]
  assert (tmp_path / 'workdir' / 'keep.txt').read_text() == 'precious'
  # Refused before the run started (its first line), not after a wall-clock
  # limit: a busy CI machine made that flaky (58 s of a 60 s limit seen).
  # The in-process test above proves the refusal comes from the checks.
  assert 'Starting at step' not in proc.stderr, proc.stderr[-3000:]
