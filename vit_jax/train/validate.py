"""Up-front config checks of a training run, before anything is compiled or
loaded, so that a typo costs a second, not a crashed job.

The training loop (`loop.train_and_evaluate`) runs `check_fields` (every
field of the config is one its task reads), `check_run` (what every run
needs), then its task's own checks (`check_classifier` here for the
classifier; `task_lit.LitTask.check` for LiT), then `check_workdir`. Each
message says what is wrong and how to fix it.
"""
import difflib
import os
import uuid

from etils import epath
import jax
import jax.numpy as jnp

from vit_jax import checkpoint
from vit_jax import models
from vit_jax import remote
from vit_jax.checkpoint import hub
from vit_jax.configs import common
from vit_jax.data import input_pipeline
from vit_jax.data import mixup
from vit_jax.models import flexi
from vit_jax.train import optim
from vit_jax.train import sharding

_POSITIVE = ('total_steps', 'batch_size', 'eval_batch_size', 'log_every',
             'eval_every', 'checkpoint_every', 'accum_steps', 'image_size')


def _check_model(config):
  """Traces the model's init (shapes only, nothing runs) to surface its own
  errors: heads vs hidden size, patch size vs image size, classifier.
  Returns the params' shapes."""
  size = config.image_size
  try:
    model = models.create(config.model, 2)
    return jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0),
                           jnp.zeros((1, size, size, 3)), train=False)
    )['params']
  except (TypeError, KeyError, AttributeError) as e:
    raise ValueError(f'config.model is not a valid model config ({e}); '
                     'start from a preset in vit_jax/configs/models.py.') from e


def _check_pretrained(config, model_shapes):
  """The checkpoint's headers are readable, and a Mixer checkpoint was made
  for the model's token count (it cannot be adapted to another one)."""
  path = config.pretrained_path
  checkpoint.check_token_count(checkpoint.npz_shapes(hub.resolve(path)),
                               model_shapes, path, config.model)


# Fields that are gone, and what replaced them.
_RENAMED = {'trainer': "config.task names the training task ('lit' for "
                       'configs/lit.py)',
            'temperature_init': 'the model sets it: config.model.'
                                'temperature_init'}


def _fields(config, prefix=''):
  """The dotted names of `config`'s fields; `model` is one (its own fields
  are the model's to check: `models.create`)."""
  for key, value in config.items():
    name = prefix + key
    if name != 'model' and hasattr(value, 'items') and len(value):
      yield from _fields(value, name + '.')
    else:
      yield name


def task_fields(task: str):
  """The fields a config of `task` may have (`configs.common`'s tables)."""
  return (set(_fields(common.base_config(task))) |
          set(common.OPTIONAL_FIELDS.get(task, ())))


def check_fields(config, task: str):
  """Every field of `config` is one `task` reads: a field only another task
  reads, a misspelled or unknown one, is a ValueError naming it (never
  silently ignored)."""
  if config.get('task', task) != task:
    raise ValueError(f'config.task={config.task!r}, but this is the {task!r} '
                     'task: train the config with vit_jax.train.tasks.create('
                     'config).')
  known = task_fields(task)
  for name in _fields(config):
    if name in known:
      continue
    if name in _RENAMED:
      raise ValueError(f'config.{name} is gone: {_RENAMED[name]}.')
    owners = [t for t in common.TASK_FIELDS if t != task and
              name in task_fields(t)]
    if owners:
      raise ValueError(
          f'config.{name} is a field of the {" and ".join(map(repr, owners))}'
          f' task{"s" * (len(owners) > 1)}, not of the {task!r} task '
          '(config.task) that this config trains: remove it.')
    close = difflib.get_close_matches(name, known, n=1)
    raise ValueError(f'Unknown config field config.{name} (the {task!r} task '
                     'does not read it)' +
                     (f'; did you mean config.{close[0]}?' if close else '.'))


def check_workdir(workdir):
  """The workdir can be created and written (a probe file, removed again)."""
  # A name of its own: every process of a multi-host run probes the same
  # (shared) workdir at the same time.
  probe = epath.Path(workdir) / f'.write_test-{uuid.uuid4().hex}'
  try:
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text('ok')
    probe.unlink()
  except OSError as e:
    raise ValueError(f'The workdir {workdir!r} cannot be written ({e}); pass'
                     ' a writable --workdir.') from e


def check_run(config, *, workdir: str, num_devices: int, num_processes: int):
  """What every training run needs: a reachable workdir, positive sizes,
  batches that split over the devices, a known `nonfinite` policy."""
  # Unreachable storage fails in seconds (remote.TIMEOUT_S).
  remote.check(workdir, '--workdir', must_exist=False)
  for name in _POSITIVE:
    if config[name] <= 0:
      raise ValueError(f'config.{name}={config[name]} must be positive.')
  try:
    sharding.check_split(config, num_devices, num_processes)
  except ValueError as e:
    if jax.default_backend() != 'cpu':
      raise
    raise ValueError(f'{e} On a CPU, --config.cpu_devices=N sets the device '
                     'count (0: one per core, where the batches split).'
                     ) from None
  if config.get('nonfinite', 'stop') not in ('stop', 'skip'):
    raise ValueError(f"config.nonfinite={config.nonfinite!r}: use 'stop' or "
                     "'skip'.")


def check_classifier(config) -> input_pipeline.DatasetInfo:
  """The classifier's model, pretrained checkpoint and dataset; returns the
  dataset's info."""
  for field in ('pretrained_path', 'data_dir'):
    remote.check(config.get(field) or '', f'config.{field}')
  optim.check(config)
  mixup.check(config)
  flexi.check(config)
  model_shapes = _check_model(config)
  if config.get('pretrained_path') and '://' not in config.pretrained_path \
      and not hub.is_hub_name(config.pretrained_path) \
      and not os.path.isfile(config.pretrained_path):
    raise FileNotFoundError(
        f'config.pretrained_path={config.pretrained_path!r} does not exist.')
  if checkpoint.is_safetensors(config.get('pretrained_path') or ''):
    # A timm / transformers ViT: its keys and architecture against the model.
    checkpoint.check_safetensors(config.pretrained_path, config.model)
  elif config.get('pretrained_path'):
    _check_pretrained(config, model_shapes)
  return input_pipeline.get_info(config)


def validate(config, *, workdir: str, num_devices: int, num_processes: int):
  """All of a classifier run's checks, in the loop's order; returns the
  dataset's info. Raises ValueError/FileNotFoundError on bad input."""
  check_fields(config, 'classify')
  check_run(config, workdir=workdir, num_devices=num_devices,
            num_processes=num_processes)
  info = check_classifier(config)
  check_workdir(workdir)
  return info
