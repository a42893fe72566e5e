"""Training-state checkpoints in WORKDIR/checkpoints with orbax.

Saves are asynchronous and atomic (orbax writes into a temporary directory
and renames it when complete), so a crash never leaves a half-written
checkpoint that looks finished. On restore the newest checkpoint that reads
back is used; one that is truncated or corrupt is reported by name and the
previous one is tried.
"""
import os
from typing import Optional, Tuple

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from vit_jax.workdir import layout


class Manager:
  """A thin wrapper over `ocp.CheckpointManager` for the train state."""

  def __init__(self, workdir: str, config):
    if '://' not in workdir:  # Orbax wants absolute local paths.
      workdir = os.path.abspath(workdir)
    self.directory = os.path.join(workdir, layout.CHECKPOINTS)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.get('keep_checkpoints', 3), create=True,
            enable_async_checkpointing=True))

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore_latest(self, like):
    """The newest readable checkpoint laid out like `like`, or None if none.

    Raises:
      ValueError: checkpoints exist but none fits `like` (another model or
        optimizer wrote them), so the run does not silently start over.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        like)
    corrupt, misfit = [], []
    for step in steps:
      try:
        return self._manager.restore(
            step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # pylint: disable=broad-except
        # Whatever orbax or tensorstore raise; the stored shapes tell a
        # damaged checkpoint of this run from one of another model.
        (misfit if self._stored_shapes(step) not in (None, _shapes(like))
         else corrupt).append(step)
        logging.warning(
            f'Checkpoint {os.path.join(self.directory, str(step))} is '
            f'unreadable ({type(e).__name__}: {str(e)[:200]}); falling back '
            'to the previous one.')
    if corrupt:
      raise ValueError(
          f'Checkpoint(s) {corrupt} in {self.directory} are truncated or '
          'corrupt (the machine stopped while they were written?) and no '
          'older checkpoint of this run can be restored, so the run cannot '
          'resume. To start this workdir over from step 0, move '
          f'{os.path.join(self.directory, str(corrupt[0]))} aside; or use a '
          'new --workdir.' + (f' Checkpoint(s) {misfit} hold another model.'
                              if misfit else ''))
    if misfit:
      raise ValueError(
          f'None of the checkpoints {misfit} in {self.directory} can be '
          'restored for this config (different model, optimizer or scan '
          'setting?). Use a new --workdir, or remove that directory to '
          'start over.')
    return None

  def _stored_shapes(self, step: int):
    """The array shapes checkpoint `step` holds, or None if unreadable."""
    try:
      stored = ocp.StandardCheckpointer().metadata(
          os.path.join(self.directory, str(step), 'default')).item_metadata
      return _shapes(stored.tree)
    except Exception:  # pylint: disable=broad-except
      return None

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _shapes(tree):
  return jax.tree.map(lambda x: tuple(x.shape), tree)


def restore_params(workdir: str, like, step: Optional[int] = None
                   ) -> Tuple[dict, int]:
  """Only the params of checkpoint `step` (None: the newest) of a run.

  `like` is the params tree (shapes and dtypes); the optimizer state is not
  read. Returns (numpy params, step).

  Raises:
    ValueError: no such checkpoint (the message lists those there are).
  """
  directory = layout.path(workdir, layout.CHECKPOINTS)
  if not directory.exists():
    raise ValueError(f'{workdir} has no checkpoints (no {directory}).')
  manager = ocp.CheckpointManager(
      directory if '://' in workdir else directory.absolute(),
      options=ocp.CheckpointManagerOptions(create=False))
  available = sorted(manager.all_steps())
  if step is None and available:
    step = available[-1]
  if step not in available:
    manager.close()
    raise ValueError(f'{directory} has no checkpoint of step {step} (it has '
                     f'{available or "none"}).')
  restore_args = jax.tree.map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), like)
  try:
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item={'params': like}, restore_args={'params': restore_args},
        partial_restore=True))
  except Exception as e:  # pylint: disable=broad-except
    # Whatever orbax or tensorstore raise: the checkpoint is unusable.
    raise ValueError(f'Checkpoint {directory / str(step)} cannot be read as '
                     f'this run\'s params ({type(e).__name__}: '
                     f'{" ".join(str(e).split())[:300]}).') from e
  finally:
    manager.close()
  return restored['params'], step
