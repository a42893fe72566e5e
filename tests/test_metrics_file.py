"""metrics.jsonl: a torn last line is dropped, any other bad line named."""
import pytest

from vit_jax.workdir import metrics


def test_metrics_torn_last_line_dropped_other_bad_line_named(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1, "a": 0.5}\n{"step": 2, "a": 0.2}\n{"step": 3, "')
  assert metrics.read(path) == [{'step': 1, 'a': 0.5},
                                {'step': 2, 'a': 0.2}]
  path.write_text('{"step": 1}\n{"step": 2, "a"\n{"step": 3}\n')
  with pytest.raises(ValueError, match=f'{path}:2 is not a metrics record'):
    metrics.read(path)
