"""WORKDIR/metrics.jsonl: one JSON record per line, appended as a run goes.

A kill can cut the line being written; on resume that last line is dropped
with a warning (its step is re-run anyway). Any other line that does not
parse is an error naming the file and line: something else wrote there.
"""
import json
from typing import List

from absl import logging
from etils import epath


def read(path: epath.Path) -> List[dict]:
  """The records of `path`, without a torn last line.

  Raises:
    ValueError: a line other than the last is not a JSON record.
  """
  lines = path.read_text().splitlines()
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or 'step' not in record:
        raise ValueError('not a record with a "step"')
    except ValueError as e:
      if number == len(lines):
        message = (f'{path}: dropping its last line {number}, cut short by '
                   f'a kill ({e}).')
        logging.warning(message)
        continue
      raise ValueError(f'{path}:{number} is not a metrics record ({e}); '
                       'remove or fix that line to resume.') from None
    records.append(record)
  return records

