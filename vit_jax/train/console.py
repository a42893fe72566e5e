"""What a person sees on the console: our lines, not the libraries' chatter.

By default (`quiet()`): TensorFlow's C++ start-up lines (oneDNN, CPU
instructions, CUDA probing: printed to the stderr file descriptor while
tensorflow is imported, before its own log level applies; `quiet_tf`),
JAX's backend probing, and absl's INFO lines (clu's logging writer repeats
every metric) are silenced; warnings stay, one plain line each. `main.py --verbose` keeps
all of it. metrics.jsonl and TensorBoard keep every metric either way.

`Progress` prints the run's own lines: one per log step, one per eval, and,
when stderr is a terminal, a live progress bar between them.
"""
import logging as std_logging
import sys
import threading
import time

from absl import logging

from vit_jax import quiet_tf

# Library loggers that report backend probing ("Unable to initialize backend
# 'tpu'", CUDA plugin discovery) as a matter of course.
_PROBING_LOGGERS = ('jax._src.xla_bridge', 'jax._src.compiler')


class _PlainFormatter(std_logging.Formatter):
  """`warning: message`: no timestamp, thread id or source line."""

  def format(self, record):
    return f'{record.levelname.lower()}: {record.getMessage()}'


def _quiet_orbax(record) -> bool:
  """orbax logs every step of every save at INFO, and each failed background
  write of a failed save at ERROR (with its traceback); the failure itself
  reaches `main`, which reports it in one line. Its warnings stay, one line
  each."""
  if 'orbax' not in record.pathname:
    return True
  if record.levelno != std_logging.WARNING:
    return False
  record.msg, record.args = record.getMessage().splitlines()[0], None
  record.exc_info = record.exc_text = None
  return True


def _main_thread_only(hook):
  """`sys.unraisablehook` for the main thread only.

  When a checkpoint save fails (a full disk), tensorstore's threads report,
  as "unraisable", a traceback for every pending write whose asyncio loop
  orbax has closed: hundreds of them. The failure itself reaches the main
  thread, and `main` reports it in one line.
  """
  def unraisablehook(unraisable):
    if threading.current_thread() is threading.main_thread():
      hook(unraisable)
  return unraisablehook


def quiet() -> None:
  """Silences library start-up and probing output for this process.

  Call before anything imports TensorFlow: `quiet_tf` (installed by
  `import vit_jax` already) imports it with its C++ start-up lines off.
  """
  quiet_tf.install()
  for name in _PROBING_LOGGERS:
    std_logging.getLogger(name).setLevel(std_logging.WARNING)
  # A failed save's pending writes: "Future exception was never retrieved".
  std_logging.getLogger('asyncio').setLevel(std_logging.CRITICAL)
  sys.unraisablehook = _main_thread_only(sys.unraisablehook)
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_handler().addFilter(_quiet_orbax)
  logging.get_absl_handler().setFormatter(_PlainFormatter())


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds >= 3600:
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
  return f'{seconds // 60}m{seconds % 60:02d}s'


def _short(name: str) -> str:
  """A metric's name without its kind ('eval/accuracy' -> 'accuracy'), the
  EMA's marked ('eval_ema/accuracy' -> 'ema_accuracy')."""
  kind, sep, short = name.partition('/')
  if not sep:
    return name
  return f'ema_{short}' if kind == 'eval_ema' else short


class Progress:
  """Process 0's progress lines on stderr (every other process is silent).

  Each step's line and the ETA count from `start_step`, so a resumed run's
  ETA is its own pace.
  """

  _BAR_WIDTH = 24
  _BAR_INTERVAL = 0.2  # Seconds between redraws of the live bar.

  def __init__(self, total_steps: int, start_step: int, active: bool,
               stream=None):
    self.total, self.start, self.active = total_steps, start_step, active
    self.stream = stream or sys.stderr
    self.live = active and self.stream.isatty()
    self.t0 = time.time()
    self._bar_shown, self._last_bar = False, 0.0

  def eta(self, step: int) -> str:
    done = step - self.start
    return _duration((time.time() - self.t0) / max(done, 1) *
                     (self.total - step))

  def line(self, text: str) -> None:
    """A permanent line (the live bar, if any, is redrawn below it)."""
    if not self.active:
      return
    if self._bar_shown:
      text = '\r\033[K' + text
      self._bar_shown = False
    print(text, file=self.stream, flush=True)

  def step(self, step: int, record: dict) -> None:
    """The log step's line from its metrics record (`train/lr` optional)."""
    lr = f"lr {record['train/lr']:.3g}  " if 'train/lr' in record else ''
    self.line(f"step {step}/{self.total}  loss {record['train/loss']:.4f}  "
              f"{lr}{record['train/images_per_sec']:.0f} img/s  "
              f'ETA {self.eta(step)}')

  def eval(self, step: int, metrics: dict) -> None:
    self.line(f'eval at step {step}: ' + '  '.join(
        f'{_short(k)} {v:.4f}' if isinstance(v, float) else
        f'{_short(k)} {v}' for k, v in metrics.items()))

  def tick(self, step: int) -> None:
    """Redraws the live bar (a terminal only, at most 5 times a second)."""
    now = time.time()
    if not self.live or now - self._last_bar < self._BAR_INTERVAL:
      return
    filled = self._BAR_WIDTH * step // self.total
    bar = '#' * filled + '.' * (self._BAR_WIDTH - filled)
    self.stream.write(f'\r\033[K[{bar}] {step}/{self.total}  '
                      f'ETA {self.eta(step)}')
    self.stream.flush()
    self._bar_shown, self._last_bar = True, now
