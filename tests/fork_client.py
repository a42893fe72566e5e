"""`python -I -S tests/fork_client.py ARGV...` runs `python ARGV...` forked
from the suite's fork server (tests/fork_server.py), as if this process were
that program.

This process passes its argv, environment, working directory, umask,
resource limits (a test's `preexec_fn` may set them) and its stdin, stdout
and stderr descriptors to the server, forwards the signals a test
sends it (SIGINT, SIGTERM, ...) to the forked program, and exits with that
program's status (its exit code, or killed by the same signal). Killed
itself (kill -9, a timeout), it takes the program down with it: the program
watches this process's end of the socket. Its own start takes ~20 ms
(standard library only, no site-packages).

Without a server (VIT_JAX_TEST_FORK_SERVER unset or not answering), or when
the server answers `fresh`, it becomes a fresh `python ARGV...` (exec).
"""
import json
import os
import resource
import signal
import socket
import sys

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)


def _exec_fresh(argv):
  signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
  os.execv(sys.executable, [sys.executable, *argv])


def _exit_like(status):
  if os.WIFSIGNALED(status):
    signum = os.WTERMSIG(status)
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
  os._exit(os.waitstatus_to_exitcode(status))  # pylint: disable=protected-access


def main():
  argv = sys.argv[1:]
  # Held until the program's pid is known, then forwarded to it.
  signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
  path = os.environ.get('VIT_JAX_TEST_FORK_SERVER')
  if not path:
    _exec_fresh(argv)
  sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
  try:
    sock.connect(path)
  except OSError:
    _exec_fresh(argv)
  umask = os.umask(0)
  os.umask(umask)
  limits = {name: resource.getrlimit(getattr(resource, name))
            for name in dir(resource) if name.startswith('RLIMIT_')}
  request = dict(argv=argv, env=dict(os.environ), cwd=os.getcwd(),
                 umask=umask, limits=limits)
  socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
  reply = sock.recv(64)
  if reply in (b'fresh', b''):
    _exec_fresh(argv)
  pid = int(reply)
  for signum in FORWARDED:
    signal.signal(signum, lambda signum, _: os.kill(pid, signum))
  signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
  status = sock.recv(64)  # Retried after each forwarded signal (PEP 475).
  if not status:
    print(f'fork_client: the fork server ended before pid {pid} did',
          file=sys.stderr)
    os._exit(1)  # pylint: disable=protected-access
  _exit_like(int(status))


if __name__ == '__main__':
  main()
