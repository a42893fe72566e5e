"""A progress bar on a terminal, nothing anywhere else.

For the waits that are not training steps (those have the console's own
lines, `train/console.py`): a hub download, indexing TFRecord files,
evaluating a split, extracting few-shot features, exporting, benchmarking.
The bars are tqdm's, written to stderr, and follow the training console's
rule: drawn only when the stream they are written to is a terminal, so a log
file, a pipe or CI output gets no bar and no carriage returns. A bar also
stays hidden for its first `DELAY` seconds, so a wait that ends sooner (a
cached index, a small split) leaves the terminal as it was; when a bar ends
it is erased, and the tool's own lines follow.

  for batch in progress.bar(batches, total=n, desc='evaluating'):
    ...
  with progress.waiting('compiling'):  # One long call: the time it takes.
    compiled = lowered.compile()

`TQDM_DISABLE=1` in the environment turns every bar off (tqdm's own switch).
"""
import contextlib
import sys
import threading
from typing import Iterable, Iterator, Optional, TextIO

import tqdm

DELAY = 1.0  # Seconds before a bar appears.
_TICK = 0.5  # Seconds between redraws of a `waiting` line.


def shown(stream: TextIO) -> bool:
  """Whether bars written to `stream` are drawn: a terminal only."""
  isatty = getattr(stream, 'isatty', None)
  try:
    return bool(isatty and isatty())
  except ValueError:  # A closed stream.
    return False


class Bar(tqdm.tqdm):
  """tqdm on stderr, disabled unless stderr is a terminal (or `active` is
  False: another process than 0 of a multi-process run, say).

  Also the `tqdm_class` given to huggingface_hub, so that its download bars
  follow the same rule.
  """

  def __init__(self, iterable: Optional[Iterable] = None, *args,
               active: bool = True, file: Optional[TextIO] = None,
               **kwargs):
    file = file or sys.stderr
    kwargs.setdefault('leave', False)
    kwargs.setdefault('delay', DELAY)
    kwargs.setdefault('dynamic_ncols', True)
    kwargs['disable'] = kwargs.get('disable') or not (active and shown(file))
    super().__init__(iterable, *args, file=file, **kwargs)


def bar(iterable: Optional[Iterable] = None, **kwargs) -> Bar:
  """`Bar(iterable, **kwargs)`: `total=`, `desc=`, `unit=`, `active=`."""
  return Bar(iterable, **kwargs)


@contextlib.contextmanager
def waiting(desc: str, *, active: bool = True,
            file: Optional[TextIO] = None) -> Iterator[None]:
  """`desc` and the seconds elapsed, redrawn while the block runs.

  For one long call that has no steps to count (a compile, an export): a
  thread redraws the line every half second; it is erased at the end.
  """
  with Bar(total=None, desc=desc, active=active, file=file,
           bar_format='{desc} ({elapsed})') as line:
    if line.disable:
      yield
      return
    done = threading.Event()

    def redraw():
      while not done.wait(_TICK):
        line.update(0)  # Redraws (after the delay), the clock only.

    thread = threading.Thread(target=redraw, daemon=True)
    thread.start()
    try:
      yield
    finally:
      done.set()
      thread.join()
