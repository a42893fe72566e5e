"""Graceful stop on SIGTERM / SIGINT: every process stops at the same step.

Schedulers announce an eviction with SIGTERM (spot VMs, SLURM `--signal`,
Kubernetes before `terminationGracePeriodSeconds` run out); people press
Ctrl-C (SIGINT). Either way the training loop finishes the step in flight,
saves a checkpoint at that step and exits with 128 + the signal number
(`Stopped`). A second signal kills the process at once (the default action
is back in place after the first), with no traceback; in multi-process runs
that holds for SIGINT (JAX's handler keeps SIGTERM).

One process: a Python handler sets a flag that the loop reads after each
step.

Several processes (jax.distributed): all of them must stop at the same step,
or the ones that go on wait forever in the next collective. JAX's preemption
service decides that step: `jax.distributed.initialize` installs its own
SIGTERM handler; a notice on any process (that handler, or one the cluster
sends to JAX's distributed runtime) reaches every process through the
coordination service, which picks the step after the furthest one reached;
`multihost_utils.reached_preemption_sync_point(step)`, a mutex and a compare
per step, says True on every process at that step. SIGINT is handed to the
same service by re-sending it to this process as SIGTERM.
"""
import os
import signal
import sys
from typing import Optional

from absl import logging
import jax
from jax.experimental import multihost_utils

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
  """The run stopped at `step` on a signal, after saving a checkpoint."""

  def __init__(self, signum: int, step: int, directory: str):
    self.signum, self.step = signum, step
    self.exit_code = 128 + signum
    super().__init__(
        f'stopped by {signal.Signals(signum).name} at step {step}; checkpoint '
        f'saved in {directory}; re-run the same command to resume.')


def _preemption_service() -> bool:
  """Whether jax.distributed runs with its preemption sync manager."""
  return (jax.distributed.is_initialized() and
          jax.config.jax_enable_preemption_service)


class StopRequests:
  """Signal handlers for the life of the training loop (a context manager).

  `should_stop(step)` is called once per step, with the same steps on every
  process; it says True on all processes at the same step once a stop was
  asked for.
  """

  def __init__(self, process_count: int):
    self.signum: Optional[int] = None
    self._service = _preemption_service()
    self._previous = {}
    if process_count > 1 and not self._service:
      logging.warning('jax_enable_preemption_service is off: a signal ends '
                      'this multi-process run without a checkpoint.')
      self._handled = ()
    elif self._service:
      self._handled = (signal.SIGINT,)  # JAX's own handler has SIGTERM.
    else:
      self._handled = _SIGNALS

  def __enter__(self):
    for signum in self._handled:
      self._previous[signum] = signal.signal(signum, self._on_signal)
    return self

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)

  def _on_signal(self, signum, frame):
    del frame
    self.signum = signum
    for handled in self._handled:  # A second signal ends the process at once.
      signal.signal(handled, signal.SIG_DFL)
    print(f'{signal.Signals(signum).name} received: stopping after this step '
          'with a checkpoint (Ctrl-C again to abort without one).',
          file=sys.stderr, flush=True)
    if self._service:
      os.kill(os.getpid(), signal.SIGTERM)  # To JAX's preemption service.

  def should_stop(self, step: int) -> bool:
    if self._service:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signum is not None

  def stopped(self, step: int, directory: str) -> Stopped:
    """The exception that ends the run; SIGTERM where another process (or
    the cluster) gave the notice."""
    return Stopped(self.signum or signal.SIGTERM, step, directory)
