"""Shared fixtures: the reference files and tiny model configs."""
import itertools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings

import filelock
import ml_collections
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
REFERENCE = SHARED / 'reference'

# The suite compiles with LLVM at -O0, in its own process and in every
# main.py/CLI process it starts (`main_env`): the tiny models' XLA:CPU
# compiles take a third of the time (a 6-step testing run: 20 s -> 14 s), and
# compiles are most of what the suite does. Matmuls and convolutions are
# library calls either way and neither level uses fast-math, so the numbers
# are the same; runs a test compares bit for bit share the flags anyway.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
if TEST_XLA_FLAGS not in os.environ.get('XLA_FLAGS', ''):  # xdist workers
  os.environ['XLA_FLAGS'] = ' '.join(  # inherit the controller's.
      filter(None, (os.environ.get('XLA_FLAGS'), TEST_XLA_FLAGS)))

# Tests on the real Fashion-MNIST read the Debian package's files.
needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir('/usr/share/datasets/fashion-mnist'),
    reason='Debian package dataset-fashion-mnist missing')


def run_temp_dir(tmp_path_factory):
  """The base temp dir of this test run, the same for every xdist worker
  (each worker's own base temp dir is a folder below it)."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def build_once(tmp_path_factory, name, build):
  """`build(path)` once per test run; every xdist worker gets that `path`.

  Session fixtures are otherwise built again by each worker. The first
  worker to take the lock builds; the others wait, then read its result, or
  fail at once with its error (a failed build is not tried again).
  """
  path = run_temp_dir(tmp_path_factory) / name
  done, failed = (path.with_name(f'{name}.{end}') for end in ('done',
                                                              'failed'))
  with filelock.FileLock(str(path) + '.lock'):
    if failed.exists():
      pytest.fail(f'building {name} failed earlier in this test run:\n'
                  + failed.read_text(), pytrace=False)
    if not done.exists():
      path.mkdir()
      try:
        build(path)
      except BaseException as e:
        failed.write_text(f'{type(e).__name__}: {e}'[-5000:])
        raise
      done.touch()
  return path


@pytest.fixture(scope='session', autouse=True)
def jax_compilation_cache(tmp_path_factory):
  """One persistent JAX compilation cache for every process of a test run.

  Most tests start `main.py` on the same tiny configs; with the cache a
  subprocess loads its compiled steps instead of compiling them again (about
  half of a short run's time). The cache is keyed on the computation, the
  compiler flags and the devices, so a hit is the same executable.
  Under pytest-xdist the workers share the run's base temp dir.
  """
  cache = run_temp_dir(tmp_path_factory) / 'jax_compilation_cache'
  os.environ.update(JAX_COMPILATION_CACHE_DIR=str(cache),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  import jax  # pylint: disable=g-import-not-at-top  (after the env is set)
  jax.config.update('jax_compilation_cache_dir', str(cache))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  return cache


FORK_SERVER_VARIABLE = 'VIT_JAX_TEST_FORK_SERVER'
_fork_server = {}


@pytest.fixture(scope='session', autouse=True)
def fork_server(jax_compilation_cache, tmp_path_factory):  # pylint: disable=unused-argument
  """This worker's fork server (tests/fork_server.py), started at once so
  that its imports are done by the first `python_command`; stopped at the
  end. Its log (fork_server_WORKER.log in the run's temp dir) names the
  programs it left to fresh interpreters, and why.
  VIT_JAX_TEST_FRESH_PROCESSES=1 turns it off: every program then starts in
  a fresh interpreter."""
  if os.environ.get('VIT_JAX_TEST_FRESH_PROCESSES') == '1':
    yield None
    return
  directory = tempfile.mkdtemp(prefix='vit_jax_fork_')  # AF_UNIX: 108 chars.
  path = os.path.join(directory, 'socket')
  os.environ[FORK_SERVER_VARIABLE] = path
  log_path = run_temp_dir(tmp_path_factory) / (
      f'fork_server_{os.environ.get("PYTEST_XDIST_WORKER", "main")}.log')
  with open(log_path, 'w') as log:
    server = subprocess.Popen(
        [sys.executable, '-m', 'tests.fork_server', path], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
  _fork_server.update(process=server, log=log_path)
  yield server
  os.environ.pop(FORK_SERVER_VARIABLE, None)
  server.stdin.close()  # The server's signal to exit.
  try:
    server.wait(timeout=60)
  except subprocess.TimeoutExpired:
    server.kill()
  shutil.rmtree(directory, ignore_errors=True)


def _fork_server_ready() -> bool:
  """Waits for this worker's fork server to finish its imports; False (and
  a warning) if it cannot serve."""
  server = _fork_server.get('process')
  if server is None or os.environ.get(FORK_SERVER_VARIABLE) is None:
    return False
  if 'ready' not in _fork_server:
    _fork_server['ready'] = server.stdout.readline().strip() == 'ready'
    if not _fork_server['ready']:
      with open(_fork_server['log']) as log:
        warnings.warn('The fork server did not start; programs start in '
                      'fresh interpreters (slower):\n' + log.read()[-3000:])
  return _fork_server['ready']


def python_command(*args, fresh=False):
  """`python ARGS...` (a script, `-m MODULE` or `-c CODE`, with its
  arguments), forked from this worker's fork server: the same program,
  without its ~5 CPU-s of imports (tests/fork_server.py says what stays the
  same). `fresh=True`: a fresh interpreter, for tests of what a program
  prints while it imports, or of its pid."""
  if fresh or not _fork_server_ready():
    return [sys.executable, *args]
  return [sys.executable, '-I', '-S', str(ROOT / 'tests' / 'fork_client.py'),
          *args]


@pytest.fixture(scope='session')
def reference():
  """The shared reference case dir and its cases.json (skips if absent)."""
  if not (REFERENCE / 'cases.json').exists():
    pytest.skip(f'{REFERENCE} not found (CI lays ../shared beside the repo).')
  return REFERENCE, json.loads((REFERENCE / 'cases.json').read_text())


def zero_params(model, image_shape):
  """Zeros in the tree and shapes of `model.init`'s params, made without
  compiling anything: for code that reads only the shapes (layouts, a new
  head, mismatch errors)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), np.zeros(image_shape, np.float32),
      train=False)['params'])
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def tiny_config(**overrides):
  """A 2-block ViT small enough for unit tests (32 px, 8 px patches)."""
  config = ml_collections.ConfigDict(dict(
      model_name='tiny', patches={'size': (8, 8)}, hidden_size=16,
      transformer=dict(mlp_dim=32, num_heads=2, num_layers=2,
                       attention_dropout_rate=0.0, dropout_rate=0.0),
      classifier='token', representation_size=None))
  config.update(overrides)
  return config


def write_image_folder(root, *, num_train=48, num_eval=21, size=16, seed=0):
  """A learnable 3-class PNG folder: the class sets the dominant colour."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  for split, count in (('train', num_train), ('test', num_eval)):
    for i in range(count):
      label = i % 3
      image = rng.randint(0, 80, (size, size, 3))
      image[..., label] += 150
      path = root / split / f'class{label}'
      path.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image.astype('uint8')).save(path / f'{i}.png')
  return root


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory):
  """The 3-class folder of `write_image_folder` (read-only: shared by all
  workers)."""
  return build_once(tmp_path_factory, 'images', write_image_folder)


def _config_args(data_dir, overrides, config):
  """main.py's --config flag and config overrides (see `main_command`)."""
  args = [] if config is None else [f'--config={ROOT / config}']
  if data_dir is not None:
    args += ['--config.dataset=imagefolder', f'--config.data_dir={data_dir}']
  return args + list(overrides)


def main_command(workdir, data_dir, *overrides, config='configs/testing.py',
                 fresh=False):
  """`python main.py` on the testing config over an image folder.

  `config=None` runs the default job (no --config); `data_dir=None` keeps the
  config's own dataset; `fresh`: see `python_command`.
  """
  return python_command(str(ROOT / 'main.py'), f'--workdir={workdir}',
                        *_config_args(data_dir, overrides, config),
                        fresh=fresh)


def main_env(devices=1):
  """The environment for `main.py` on exactly `devices` CPU devices.

  Without it main.py splits the CPU into one device per core
  (vit_jax/train/cpu_devices.py), and runs compared bit for bit must match.
  """
  return dict(os.environ,
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} '
              + TEST_XLA_FLAGS)


def run_main(workdir, data_dir, *overrides, devices=1,
             config='configs/testing.py', fresh=False):
  return subprocess.run(main_command(workdir, data_dir, *overrides,
                                     config=config, fresh=fresh),
                        env=main_env(devices),
                        capture_output=True, text=True, timeout=300)


# A model whose train step takes ~0.28 s on 2 idle cores (4 blocks of width
# 64 at 32 px, batch 32, compiled at -O0): a test can signal or kill its run
# between two steps it chose. 36 steps, a log record each, a checkpoint every
# 12.
SLOW_STEP_OVERRIDES = ('--config.total_steps=36', '--config.log_every=1',
                       '--config.checkpoint_every=12',
                       '--config.eval_every=1000', '--config.image_size=32',
                       '--config.model.hidden_size=64',
                       '--config.model.transformer.mlp_dim=256',
                       '--config.model.transformer.num_layers=4',
                       '--config.batch_size=32')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start_processes(workdir, data_dir, *overrides, num_processes=2,
                    devices_each=1):
  """`main.py` as `num_processes` local processes joined by jax.distributed
  (started, not waited for)."""
  port = _free_port()
  return [subprocess.Popen(
      main_command(workdir, data_dir, *overrides,
                   f'--coordinator_address=127.0.0.1:{port}',
                   f'--num_processes={num_processes}', f'--process_id={i}'),
      env=main_env(devices_each), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(num_processes)]


def run_processes(workdir, data_dir, *overrides, **kwargs):
  """`start_processes`, waited for; asserts each ended with exit 0 and
  returns their (stdout, stderr)."""
  procs = start_processes(workdir, data_dir, *overrides, **kwargs)
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  return outputs


def main_config(data_dir, *overrides, config='configs/testing.py'):
  """The config `main_command` gives main.py (same arguments), parsed as
  main.py parses it: its default config file, ml_collections' config_flags,
  the config locked."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  argv = ['main.py', *_config_args(data_dir, overrides, config)]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
      'config', str(ROOT / 'configs' / 'default.py'), flag_values=flag_values,
      lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def train_in_process(workdir, data_dir, *overrides,
                     config='configs/testing.py'):
  """What `run_main(workdir, data_dir, *overrides)` trains, run in this
  process (no interpreter start, no TensorFlow/JAX import): main.py's config
  to the classifier's `train_and_evaluate`. Returns its final eval metrics;
  errors are raised, the console lines go to sys.stderr.

  One device, as `run_main`'s default: the pytest process has JAX's one CPU
  device (no XLA_FLAGS device count).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from vit_jax.train import tasks  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == 1, (
      f'train_in_process needs one JAX device, this process has '
      f'{jax.device_count()} (unset XLA_FLAGS to run the tests).')
  return tasks.train_and_evaluate(
      main_config(data_dir, *overrides, config=config), str(workdir))


def assert_same_params(a_dir, b_dir):
  """The two run directories' params.npz hold the same arrays, bit for bit."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  with np.load(a_dir / 'params.npz') as a, np.load(b_dir / 'params.npz') as b:
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def read_records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def data_config(**overrides):
  """A data-only config (the fields input_pipeline reads)."""
  pp = dict(train='resize', flip=False, eval='resize', crop_padding=4,
            crop_min_area=0.08)
  pp.update(overrides.pop('pp', {}))
  config = dict(dataset='fashion_mnist', data_dir=None, train_split='train',
                eval_split='test', image_size=28, batch_size=8,
                eval_batch_size=4, seed=0, pp=pp)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def take(iterator, n):
  return list(itertools.islice(iterator, n))


BASELINE_OVERRIDES = ('--config.fewshot.shots=(1, 5)',)


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, image_folder):
  """The workdir of a finished run of configs/testing.py on the image folder
  (one device, 6 steps, 1- and 5-shot probes at each eval): config.json,
  checkpoints 3 and 6, params.npz, and eval records at steps 3 and 6 in
  metrics.jsonl. One run for the whole test session: the tests of train,
  console, predict, evaluate, export and run_dir read it (read-only: copy it
  to change it); `trained_run_console` is what it printed, in a fresh
  interpreter (imports included)."""
  def train(workdir):
    proc = run_main(workdir, image_folder, *BASELINE_OVERRIDES, fresh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _console_file(workdir).write_text(json.dumps(
        dict(stdout=proc.stdout, stderr=proc.stderr)))
  return build_once(tmp_path_factory, 'trained_run', train)


def _console_file(workdir):
  return workdir.with_name(workdir.name + '.console.json')


@pytest.fixture(scope='session')
def trained_run_console(trained_run):
  """The `trained_run` command's stdout and stderr."""
  console = json.loads(_console_file(trained_run).read_text())
  return subprocess.CompletedProcess([], 0, console['stdout'],
                                     console['stderr'])


# 20 logged steps of batch 64, no eval or checkpoint on the way.
SHORT_OVERRIDES = ('--config.total_steps=20', '--config.batch_size=64',
                   '--config.log_every=1', '--config.eval_batch_size=64',
                   '--config.eval_every=100', '--config.checkpoint_every=100')


@pytest.fixture(scope='session')
def short_run_8_devices(tmp_path_factory, image_folder):
  """The workdir of configs/testing.py with SHORT_OVERRIDES on 8 CPU
  devices, once per session: the 8-device side of the 1-vs-8 devices
  comparison (read-only)."""
  def train(workdir):
    proc = run_main(workdir, image_folder, *SHORT_OVERRIDES, devices=8)
    assert proc.returncode == 0, proc.stderr[-3000:]
  return build_once(tmp_path_factory, 'short_run_8_devices', train)


# The scale-out runs: configs/testing.py with RandAugment, Mixup, CutMix and
# label smoothing on (two processes must augment and mix as one), a log
# record each step and checkpoints at steps 20 and 40. (40 steps: a SIGTERM
# after step 2 reaches every process well before the end.)
SCALE_OVERRIDES = ('--config.total_steps=40', '--config.checkpoint_every=20',
                   '--config.eval_every=1000', '--config.log_every=1',
                   '--config.pp.randaug=(2, 10)', '--config.mixup.p=0.2',
                   '--config.cutmix.p=1.0', '--config.label_smoothing=0.1')


@pytest.fixture(scope='session')
def two_device_run(tmp_path_factory, image_folder):
  """The workdir of SCALE_OVERRIDES in one process on 2 CPU devices (data
  parallel), once per session: what the two-process, FSDP and restored runs
  are compared with (read-only)."""
  def train(workdir):
    proc = run_main(workdir, image_folder, *SCALE_OVERRIDES, devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
  return build_once(tmp_path_factory, 'two_device_run', train)


@pytest.fixture(scope='session')
def two_process_run(tmp_path_factory, image_folder):
  """The workdir of SCALE_OVERRIDES in 2 processes of 1 CPU device each,
  once per session (read-only)."""
  return build_once(tmp_path_factory, 'two_process_run', lambda workdir:
                    run_processes(workdir, image_folder, *SCALE_OVERRIDES))
