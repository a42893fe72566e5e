"""A training run read back from its workdir: config, model, params, classes.

What `predict`, `evaluate` and `export` share. `python main.py --workdir=DIR`
leaves DIR/config.json (the whole experiment config), DIR/checkpoints/<step>
(orbax, every `checkpoint_every` steps) and, at the end, DIR/params.npz
(published layout); the names are `workdir/layout.py`'s. The model is rebuilt
from the config as the trainer builds it (`steps.create_model`, so every model
family), the class names come from the dataset (`data/sources.py`'s
`class_names`).
"""
import functools
import json
import sys
from typing import List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections

from vit_jax import checkpoint
from vit_jax import remote
from vit_jax.data import sources
from vit_jax.train import steps
from vit_jax.workdir import checkpoints
from vit_jax.workdir import layout


class Run(NamedTuple):
  config: ml_collections.ConfigDict
  model: object  # A flax module of any family (`steps.create_model`).
  params: dict  # numpy arrays, laid out as the model's (stacked if `scan`).
  class_names: List[str]
  source: str  # Where the params came from: params.npz or a checkpoint.


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json (written when the run started)."""
  path = layout.path(workdir, layout.CONFIG)
  if not path.exists():
    raise FileNotFoundError(
        f'{path} does not exist: is {workdir!r} the --workdir of a '
        '`python main.py` run?')
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except ValueError as e:
    raise ValueError(f'{path} is not a readable config ({e}).') from e


def abstract_params(model, image_size: int):
  """The params tree of `model` (shapes and dtypes only; nothing runs)."""
  return jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.PRNGKey(0),
      jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  )['params']


def load(workdir: str, step: Optional[int] = None,
         config: Optional[ml_collections.ConfigDict] = None) -> Run:
  """The run in `workdir` with its final params.npz, or checkpoint `step`.

  Without `step`, a run that has not written params.npz yet (still running,
  or stopped) is read from its newest checkpoint, with a note on stderr.
  `config` replaces the run's config.json (e.g. with another eval split).

  Raises:
    ValueError / OSError with a message for the user: no such run or
    checkpoint, a dataset whose class names cannot be read, params that do
    not fit the config.
  """
  config = config or load_config(workdir)
  remote.check(config.get('data_dir') or '', "the run's config.data_dir")
  names = sources.class_names(config)
  model = steps.create_model(config, len(names))
  like = abstract_params(model, config.image_size)
  npz = layout.path(workdir, layout.PARAMS)
  newest_instead = step is None and not npz.exists()
  if step is None and npz.exists():
    params = checkpoint.load_npz(str(npz))
    if checkpoint.has_stacked_blocks(like):
      params = checkpoint.stack_blocks(params)
    params = checkpoint.fit_params(params, like, str(npz),
                                   config.model.get('model_name'))
    return Run(config, model, params, names, str(npz))
  params, step = checkpoints.restore_params(workdir, like, step)
  source = str(layout.path(workdir, layout.CHECKPOINTS) / str(step))
  if newest_instead:
    print(f'{npz} does not exist (the run has not finished); using '
          f'checkpoint {source}.', file=sys.stderr)
  return Run(config, model, params, names, source)
