"""TensorFlow imported without its C++ start-up lines.

The `tensorflow` package (not `tensorflow-cpu`) prints, on a CPU host, while
it is imported and when it first looks for GPUs: absl's "All log messages
before absl::InitializeLog() ..." notice, "oneDNN custom operations are on",
"Could not find cuda drivers", the CPU-instructions notice and "failed call
to cuInit: ... UNKNOWN ERROR (303)". C++ writes them to file descriptor 2
before TF_CPP_MIN_LOG_LEVEL applies (with tensorflow 2.21 they all appear at
level 2 too), so no setting keeps them out, and none is about the user's
work. Importing `vit_jax` calls `install()`: the first `import tensorflow`
of the process (by our modules, tfds or the user's code) then runs with
descriptor 2 on /dev/null, and so does TF's GPU probe, done right after it.
Python's own `sys.stderr` (warnings, tracebacks) still reaches the console;
TF_CPP_MIN_LOG_LEVEL defaults to 2 (TF's later INFO and WARNING lines, such
as tf.data's "End of sequence", stay out; errors show).

Who wants it all sets TF_CPP_MIN_LOG_LEVEL=0 (TensorFlow's own setting), or
passes `main.py --verbose`, which calls `uninstall()`.
"""
import contextlib
import importlib.abc
import importlib.util
import io
import os
import sys

_LEVEL = 'TF_CPP_MIN_LOG_LEVEL'


@contextlib.contextmanager
def native_stderr_to_devnull():
  """Sends file descriptor 2 (C and C++ writes) to /dev/null for the block;
  Python's `sys.stderr`, where it wrote to descriptor 2, writes to the
  console as before."""
  python_stderr = sys.stderr
  try:
    python_stderr.flush()
    writes_fd2 = python_stderr.fileno() == 2
  except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
    writes_fd2 = False  # pytest's capture, a notebook's stream: not fd 2.
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  to_console = None
  try:
    os.dup2(devnull, 2)
    if writes_fd2:
      to_console = open(saved, 'w', buffering=1, closefd=False,  # pylint: disable=consider-using-with
                        encoding=python_stderr.encoding,
                        errors=python_stderr.errors)
      sys.stderr = to_console
    yield
  finally:
    if to_console is not None:
      sys.stderr = python_stderr
      to_console.close()  # Flushes; `saved` stays open until below.
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
  """tensorflow's own loader, run with descriptor 2 on /dev/null."""

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    # The module keeps its own loader (resources, source, reloads).
    module.__loader__ = module.__spec__.loader = self._loader
    # absl's log handler keeps the `sys.stderr` of its first import, which
    # inside the block below would be a stream closed at its end (every
    # later absl log line: "I/O operation on closed file").
    import absl.logging  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
    with native_stderr_to_devnull():
      self._loader.exec_module(module)
      if hasattr(module, 'config'):
        module.config.list_physical_devices('GPU')  # Its CUDA probe, quiet.


class _Finder(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` as the other finders do, and quiets its loader."""

  def __init__(self, name: str, set_level: bool):
    self.name = name
    self.set_level = set_level  # Whether install() set TF_CPP_MIN_LOG_LEVEL.

  def find_spec(self, name, path=None, target=None):
    del path, target
    if name != self.name:
      return None
    _remove(name)  # Once: from here on it is found as usual.
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None and _quiet():
      spec.loader = _QuietLoader(spec.loader)
    return spec


def _quiet() -> bool:
  return os.environ.get(_LEVEL) != '0'


def install(name: str = 'tensorflow') -> None:
  """Quiets the first `import tensorflow` (`name`: another package, for
  tests), unless it was imported already or TF_CPP_MIN_LOG_LEVEL=0 asks for
  its lines."""
  if name in sys.modules or not _quiet() or _finders(name):
    return
  sys.meta_path.insert(0, _Finder(name, set_level=_LEVEL not in os.environ))
  os.environ.setdefault(_LEVEL, '2')


def _finders(name=None) -> list:
  return [f for f in sys.meta_path
          if isinstance(f, _Finder) and name in (None, f.name)]


def _remove(name=None) -> list:
  """Takes the finders (of `name`) off sys.meta_path; returns them."""
  found = _finders(name)
  sys.meta_path[:] = [f for f in sys.meta_path if f not in found]
  return found


def uninstall(name: str = 'tensorflow') -> None:
  """`import tensorflow` as if vit_jax were not there (main.py --verbose):
  the finder goes, and TF_CPP_MIN_LOG_LEVEL too where install() set it."""
  if any(f.set_level for f in _remove(name)):
    os.environ.pop(_LEVEL, None)
