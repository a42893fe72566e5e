"""Evaluators: what a model scores on data, behind one interface.

An evaluator is built once per run (it holds what every evaluation reuses:
a jitted step, a few-shot probe set, the class names and prompts) and is
then called at each eval: `evaluator(params, mesh) -> {name: value}`, with
the params as the trainer holds them (placed on `mesh`). A training task
lists its evaluators (`loop.Task.evaluators`) and the loop runs them all
(`run_all`):
- `classification.SplitEvaluator`: exact accuracy and loss over a split
  (`eval/accuracy`, ...);
- `fewshot.FewShotEvaluator`: linear probes on frozen features
  (`fewshot/{k}shot`);
- `zeroshot.ZeroShotEvaluator`, `zeroshot.RetrievalEvaluator`: a LiT model's
  zero-shot accuracy (`eval/zeroshot_...`) and image<->text recall
  (`eval/retrieval_...`).
"""
from typing import Any, Dict, Protocol, Sequence


class Evaluator(Protocol):

  def __call__(self, params: Any, mesh: Any) -> Dict[str, float]:
    """The metrics of `params`, each name prefixed by its kind."""


def run_all(evaluators: Sequence[Evaluator], params: Any,
            mesh: Any) -> Dict[str, float]:
  """The metrics of every evaluator, in one dict (names must not clash)."""
  metrics = {}
  for evaluator in evaluators:
    results = evaluator(params, mesh)
    clash = metrics.keys() & results.keys()
    if clash:
      raise ValueError(f'Two evaluators report {sorted(clash)}.')
    metrics.update(results)
  return metrics
