"""A Python process with TensorFlow, JAX and vit_jax imported, which the
suite's `main.py` and CLI processes are forked from.

Why: a fresh interpreter spends ~5 CPU-seconds importing TensorFlow, JAX,
flax, orbax and tfds before main.py reads its flags, and the suite starts
about 60 of them on 2 cores. Forked from this server, the same program starts
in milliseconds and runs exactly as it would from a fresh `python` (argv,
environment, working directory, stdin/stdout/stderr, exit status, signals:
see tests/fork_client.py, the side a test starts).

The one input a fork cannot change is the environment the libraries were
imported under (some read variables at import). The server imported them
under the pytest worker's environment; a request whose environment differs in
anything but XLA_FLAGS (read when JAX creates its CPU devices, after the
fork), the terminal size and pytest's own variables is answered `fresh` (the
server's log names the variables), and the client starts a fresh
interpreter instead.

What does differ from a fresh interpreter: the libraries' import-time output
went to the server's log, the pid is the forked child's (the client is the
test's process), and all forked programs share one str-hash seed. Tests of
start-up output or of pids ask for fresh interpreters (`fresh=True` in
conftest.python_command).

Usage (conftest does it): `python -m tests.fork_server SOCKET` from the
repository root; prints `ready` once listening; exits when its stdin (a pipe
from the pytest worker) closes.
"""
import atexit
import gc
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import sys
import threading
import types

import numpy as np

# What main.py and the CLIs import before their first line of work.
PRELOAD = ('vit_jax', 'tensorflow', 'jax', 'jax.numpy', 'flax.linen', 'optax',
           'orbax.checkpoint', 'tensorflow_datasets', 'clu.metric_writers',
           'vit_jax.train.tasks', 'vit_jax.train.loop', 'vit_jax.inference')
# The environment variables a forked program may see differently from the
# server: none of them is read while the PRELOAD modules are imported.
FREE_VARIABLES = ('XLA_FLAGS', 'VIT_JAX_TEST_FORK_SERVER', 'COLUMNS', 'LINES')
FREE_PREFIXES = ('PYTEST_',)


def _import_time_env(env):
  return {k: v for k, v in env.items()
          if k not in FREE_VARIABLES and not k.startswith(FREE_PREFIXES)}


class _Server:
  """Accepts requests on a SOCK_SEQPACKET socket; forks one child each;
  sends each client its child's pid, then its wait status."""

  def __init__(self, path, env):
    self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    self.listener.bind(path)
    self.listener.listen(64)
    self.children = {}  # pid -> the client's connection.
    self.env = _import_time_env(env)  # Before the imports changed any.
    self.wakeup_r, self.wakeup_w = os.pipe()
    os.set_blocking(self.wakeup_w, False)
    signal.set_wakeup_fd(self.wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    self.selector = selectors.DefaultSelector()
    self.selector.register(self.listener, selectors.EVENT_READ)
    self.selector.register(self.wakeup_r, selectors.EVENT_READ)
    self.selector.register(sys.stdin, selectors.EVENT_READ)

  def serve(self):
    """Serves until stdin closes. Returns in a forked child only: the
    program that child is to run, as a callable."""
    while True:
      for key, _ in self.selector.select():
        if key.fileobj is self.listener:
          program = self._accept()
          if program is not None:
            return program
        elif key.fileobj is self.wakeup_r:
          os.read(self.wakeup_r, 4096)
          self._reap()
        elif not sys.stdin.buffer.read1(4096):  # The pytest worker is gone.
          return None

  def _accept(self):
    conn, _ = self.listener.accept()
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    request = json.loads(message)
    argv = request['argv']
    runnable = argv and (argv[0] in ('-m', '-c')
                         or not argv[0].startswith('-'))
    env = _import_time_env(request['env'])
    if not runnable or len(fds) != 3 or env != self.env:
      changed = sorted(k for k in env.keys() | self.env.keys()
                       if env.get(k) != self.env.get(k))
      why = (f'environment variables {changed} differ from the imports\''
             if changed else 'not a script, -m or -c with stdin/out/err')
      print(f'fresh interpreter for {argv[:2]}: {why}', file=sys.stderr,
            flush=True)
      conn.sendall(b'fresh')
      conn.close()
      for fd in fds:
        os.close(fd)
      return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      self._close_for_child()
      return lambda: _run(conn, fds, request)
    for fd in fds:
      os.close(fd)
    conn.sendall(str(pid).encode())
    self.children[pid] = conn
    return None

  def _reap(self):
    while self.children:
      pid, status = os.waitpid(-1, os.WNOHANG)
      if pid == 0:
        return
      conn = self.children.pop(pid, None)
      if conn is not None:
        try:
          conn.sendall(str(status).encode())
        except OSError:  # The client was killed: nobody to tell.
          pass
        conn.close()

  def _close_for_child(self):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    self.selector.close()
    self.listener.close()
    os.close(self.wakeup_r)
    os.close(self.wakeup_w)
    for conn in self.children.values():
      conn.close()


def _die_with_client(conn):
  """The client never sends after its request: EOF means it was killed
  (kill -9, a test's timeout); this program then dies the same way."""
  while True:
    try:
      if not conn.recv(16):
        os.kill(os.getpid(), signal.SIGKILL)
    except InterruptedError:
      continue


def _run(conn, fds, request):
  """In the forked child: becomes the requested program, as `python ARGV`
  would run it."""
  for target, fd in enumerate(fds):
    os.dup2(fd, target)
    os.close(fd)
  sys.stdout.reconfigure(line_buffering=os.isatty(1))
  os.environ.clear()
  os.environ.update(request['env'])
  os.chdir(request['cwd'])
  os.umask(request['umask'])
  for name, limit in request['limits'].items():
    if resource.getrlimit(getattr(resource, name)) != tuple(limit):
      resource.setrlimit(getattr(resource, name), tuple(limit))
  threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
  np.random.seed()  # Its own entropy, as in a fresh process (`random`
  # reseeds itself after a fork).
  import runpy  # pylint: disable=g-import-not-at-top
  argv = request['argv']
  if argv[0] == '-c':
    sys.argv = ['-c', *argv[2:]]
    sys.path[0] = ''
    main = types.ModuleType('__main__')
    sys.modules['__main__'] = main
    exec(compile(argv[1], '<string>', 'exec'), main.__dict__)  # pylint: disable=exec-used
  elif argv[0] == '-m':
    sys.argv = [argv[1], *argv[2:]]
    sys.path[0] = os.getcwd()
    runpy.run_module(argv[1], run_name='__main__', alter_sys=True)
  else:
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    runpy.run_path(argv[0], run_name='__main__')


def _exit_code(exit_request):
  """The exit status of `SystemExit(exit_request)`, as the interpreter sets
  it (a message is printed, with status 1)."""
  if exit_request is None or isinstance(exit_request, int):
    return exit_request or 0
  print(exit_request, file=sys.stderr)
  return 1


def _run_and_exit(program):
  """Runs the program, then exits as the interpreter does (threads joined,
  atexit functions run, streams flushed; an uncaught KeyboardInterrupt ends
  the process by SIGINT) but without tearing down its ~5000 modules one by
  one: in a forked child that writes to every page it shares with the
  server (1.4 s a process)."""
  code, signum = 0, None
  try:
    program()
  except SystemExit as e:
    code = _exit_code(e.code)
  except KeyboardInterrupt:
    sys.excepthook(*sys.exc_info())
    signum = signal.SIGINT
  except BaseException:  # pylint: disable=broad-except
    sys.excepthook(*sys.exc_info())
    code = 1
  # As Py_FinalizeEx: threading's exit hooks (concurrent.futures stops its
  # workers there), non-daemon threads joined, then the atexit functions.
  threading._shutdown()  # pylint: disable=protected-access
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  if signum is not None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
  os._exit(code)  # pylint: disable=protected-access


def main():
  env = dict(os.environ)
  for name in PRELOAD:
    importlib.import_module(name)
  gc.freeze()  # What the children share stays out of their collections.
  server = _Server(sys.argv[1], env)
  print('ready', flush=True)
  program = server.serve()
  if program is not None:
    _run_and_exit(program)


if __name__ == '__main__':
  main()
