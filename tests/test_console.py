"""The console of a run: our own lines, no library banners or probes."""
import io
import re
import resource
import subprocess

from tests.conftest import SLOW_STEP_OVERRIDES, main_command, main_env, \
    read_records
from vit_jax.train import console

_LIBRARY_NOISE = ('oneDNN', 'cuda', 'CUDA', 'libtpu', 'InitializeLog',
                  'cpu_feature_guard', 'logging_writer', 'xla_bridge',
                  'I0000', 'W0000', 'E0000')


def test_short_run_prints_one_line_per_log_step(trained_run,
                                                trained_run_console):
  # configs/testing.py: 6 steps, a log line each, an eval every 3.
  workdir, proc = trained_run, trained_run_console
  lines = proc.stderr.splitlines()
  assert not [l for l in lines if any(n in l for n in _LIBRARY_NOISE)], lines
  assert re.fullmatch(
      r'Starting at step 0 of 6: tiny \([\d.]+M params\) on 1 devices \(cpu\)'
      r' in 1 process\(es\), mesh data=1 fsdp=1, data imagefolder \(.+\), '
      r'workdir .+', lines[0]), lines[0]
  step_lines = [l for l in lines if l.startswith('step ')]
  assert [l.split()[1] for l in step_lines] == [f'{i}/6' for i in range(1, 7)]
  assert all(re.fullmatch(r'step \d/6  loss [\d.]+  lr [\d.e-]+  \d+ img/s  '
                          r'ETA \d+m\d\ds', l) for l in step_lines), step_lines
  evals = [l for l in lines if l.startswith('eval at step ')]
  assert [l.split(':')[0] for l in evals] == ['eval at step 3',
                                              'eval at step 6']
  assert len(lines) == 1 + 6 + 2, lines  # Nothing else.
  assert proc.stdout.startswith('eval/accuracy=')  # The final summary.
  # The files keep every metric.
  records = read_records(workdir)
  assert {'train/loss', 'train/lr', 'train/grad_norm',
          'train/images_per_sec'} <= set(records[0])
  assert sum('eval/accuracy' in r for r in records) == 2


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_eval_line_tells_the_ema_apart():
  stream = io.StringIO()
  console.Progress(100, 0, True, stream=stream).eval(10, {
      'eval/accuracy': 0.5, 'eval_ema/accuracy': 0.25, 'fewshot/5shot': 0.75,
      'eval/num_examples': 21})
  assert stream.getvalue() == ('eval at step 10: accuracy 0.5000  ema_accuracy '
                               '0.2500  5shot 0.7500  num_examples 21\n')


def test_live_bar_only_on_a_terminal():
  record = {'train/loss': 0.5, 'train/lr': 1e-3, 'train/images_per_sec': 10}
  for stream, live in ((io.StringIO(), False), (_Terminal(), True)):
    progress = console.Progress(100, 0, True, stream=stream)
    progress.tick(7)
    progress.step(10, record)
    text = stream.getvalue()
    assert ('[' + '#' * 1 + '.' * 23 + '] 7/100' in text) == live, text
    # The bar is cleared before a permanent line.
    assert text.endswith('step 10/100  loss 0.5000  lr 0.001  10 img/s  '
                         f'ETA {progress.eta(10)}\n')
    assert ('\r\033[Kstep 10/100' in text) == live
  quiet = io.StringIO()
  console.Progress(100, 0, False, stream=quiet).step(10, record)
  assert not quiet.getvalue()  # Processes other than 0 print nothing.


def test_full_disk_is_one_error_line(tmp_path, image_folder):
  """A checkpoint that cannot be written (files capped at 100 KB, as on a
  full disk): one `error:` line, none of orbax's or tensorstore's
  background-thread tracebacks."""
  def cap_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
  workdir = tmp_path / 'w'
  proc = subprocess.run(
      # The preemption test's model (its compiled step is in the cache),
      # saving at step 1.
      main_command(workdir, image_folder, *SLOW_STEP_OVERRIDES,
                   '--config.checkpoint_every=1'),
      env=main_env(), capture_output=True, text=True, timeout=300,
      preexec_fn=cap_file_size)
  assert proc.returncode == 1
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'Error writing' in errors[0], proc.stderr
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert not (workdir / 'run.lock').exists()  # Released on errors too.
