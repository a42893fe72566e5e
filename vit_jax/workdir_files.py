"""The one table of the files a run directory (`--workdir`) holds.

`python main.py --workdir=DIR` (classifier and LiT runs alike) writes:
  DIR/run.lock       while the run is on: who holds the workdir (workdir_lock)
  DIR/config.json    the whole experiment config, when the run starts
  DIR/checkpoints/N  orbax train state every `checkpoint_every` steps
  DIR/metrics.jsonl  one JSON record per log / eval step (metrics_file)
  DIR/params.npz     the final params, in the published layout
  DIR/vocab.txt      LiT runs: the text tower's vocabulary
and TensorBoard event files. The names are part of the workdir layout that
lets a run resume, and `predict`, `evaluate`, `export` and `zeroshot` read
a run back: change them only with a migration.
"""
LOCK = 'run.lock'
CONFIG = 'config.json'
CHECKPOINTS = 'checkpoints'
METRICS = 'metrics.jsonl'
PARAMS = 'params.npz'
VOCAB = 'vocab.txt'
