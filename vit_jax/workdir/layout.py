"""The files of a run directory (WORKDIR), by name: the one table of them.

`python main.py --workdir=WORKDIR` (vit_jax/train/loop.py) leaves:

  config.json    the run's whole config, written when it starts (process 0);
  metrics.jsonl  one JSON record per log or eval step (workdir/metrics.py);
  checkpoints/   orbax train states, one folder per step
                 (vit_jax/workdir/checkpoints.py);
  params.npz     the final params in the published layout, at the end;
  params_ema.npz with `ema_decay` > 0: their EMA, same layout (train/ema.py);
  run.lock       who runs in WORKDIR now (vit_jax/workdir/lock.py);
  vocab.txt      image-text runs only (LiT, SigLIP): the text tower's vocabulary
                 (train/task_lit.py);
  events.out.tfevents.*  TensorBoard's copy of the metrics (clu).

Every module that writes or reads these names takes them from here, so that
the trainer, the CLIs (`predict`, `evaluate`, `export`, `zeroshot`) and a run
started by an older version agree on the layout.
"""
from etils import epath

CONFIG = 'config.json'
METRICS = 'metrics.jsonl'
CHECKPOINTS = 'checkpoints'
PARAMS = 'params.npz'
PARAMS_EMA = 'params_ema.npz'
LOCK = 'run.lock'
VOCAB = 'vocab.txt'


def path(workdir, name: str) -> epath.Path:
  """WORKDIR/`name`, local or remote."""
  return epath.Path(workdir) / name
