"""vit_jax.progress: bars on a terminal, nothing in logs, pipes or CI."""
import fcntl
import io
import os
from pathlib import Path
import pty
import struct
import subprocess
import sys
import termios
import time

import huggingface_hub

from vit_jax import progress
from vit_jax.checkpoint import hub

REPO = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_bar_on_a_terminal_only():
  for stream, drawn in ((_Terminal(), True), (io.StringIO(), False)):
    for _ in progress.bar(range(3), total=3, desc='Evaluating', file=stream,
                          delay=0):
      pass
    text = stream.getvalue()
    assert ('Evaluating:' in text and '/3 [' in text) == drawn, text
    assert ('\r' in text) == drawn, text
  # Another process than 0 of a run draws nothing, terminal or not.
  stream = _Terminal()
  for _ in progress.bar(range(3), file=stream, delay=0, active=False):
    pass
  assert not stream.getvalue()


def test_bar_waits_for_its_delay():
  stream = _Terminal()
  for _ in progress.bar(range(3), desc='Quick', file=stream, delay=5):
    pass
  assert not stream.getvalue()  # Over before it was due: the line untouched.


def test_waiting_shows_the_time_then_erases_itself():
  stream = _Terminal()
  with progress.waiting('Compiling', file=stream):
    time.sleep(progress.DELAY + 0.7)
  text = stream.getvalue()
  assert '\rCompiling (00:01)' in text, text
  assert text.endswith('\r'), text  # Blanked: the next line starts clean.
  stream = io.StringIO()
  with progress.waiting('Compiling', file=stream):
    time.sleep(progress.DELAY + 0.2)
  assert not stream.getvalue()


def test_hub_downloads_use_the_same_rule(monkeypatch, tmp_path):
  asked = {}

  def download(*args, **kwargs):
    asked.update(kwargs)
    path = tmp_path / 'model.safetensors'
    path.write_bytes(b'x' * 1000)
    return str(path)

  monkeypatch.setattr(huggingface_hub, 'hf_hub_download', download)
  monkeypatch.setattr(hub, '_hub_resolves', lambda: True)  # Online.
  hub.resolve('hf-hub:timm/vit_tiny_patch16_224.augreg_in21k')
  assert asked['tqdm_class'] is progress.Bar


# An evaluation of 6 slow batches (2 s in all, past the bar's delay).
_EVALUATE = f'''
import time
import jax.numpy as jnp
from vit_jax.evaluators import classification

def batches():
  for _ in range(6):
    time.sleep({(progress.DELAY + 1) / 6})
    yield {{}}

def eval_step(params, batch):
  return {{'correct': jnp.array(1.), 'loss': jnp.array(0.5),
          'count': jnp.array(2.)}}

print(classification.evaluate(eval_step, None, batches(), total=6))
'''


def test_evaluation_bar_absent_from_pipes_present_on_a_terminal():
  env = {k: v for k, v in os.environ.items() if k != 'TQDM_DISABLE'}
  piped = subprocess.run([sys.executable, '-c', _EVALUATE], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
  assert piped.returncode == 0, piped.stderr
  assert "'eval/accuracy': 0.5" in piped.stdout
  assert 'Evaluating' not in piped.stderr + piped.stdout
  assert '\r' not in piped.stderr + piped.stdout

  controller, terminal = pty.openpty()
  # 100 columns: a terminal of no width (a bare pty's) gets no bar either.
  fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
  proc = subprocess.Popen([sys.executable, '-c', _EVALUATE], cwd=REPO,
                          env=env, stdout=terminal, stderr=terminal)
  os.close(terminal)
  out = b''
  while True:
    try:
      chunk = os.read(controller, 4096)
    except OSError:  # The terminal closed: the process has ended.
      break
    if not chunk:
      break
    out += chunk
  os.close(controller)
  assert proc.wait(timeout=120) == 0, out
  text = out.decode()
  assert 'Evaluating:' in text and '6/6' in text, text
  assert "'eval/accuracy': 0.5" in text
