"""Runs notebooks/vit_jax.ipynb top to bottom and checks what it shows.

The notebook is executed with nbclient in a kernel of this very Python (a
`python3` kernelspec written to a temporary dir that JUPYTER_PATH puts first),
from notebooks/ as on a user's machine, offline. VIT_NOTEBOOK_OUT sends its
PNGs to tmp_path. It tells its story on the model shipped in
notebooks/models/fashion_mnist_vit/, so the numbers it prints are checked
against what that model is known to do.

The notebook is committed with its outputs, as GitHub shows it; the run here
drops them and computes them again, and the committed copy is checked on its
own (every cell's output, the shipped model's accuracy: not stale).
"""
from pathlib import Path
import os
import re
import sys

from ipykernel import kernelspec
import nbclient
import nbformat
from PIL import Image
import pytest

from tests.conftest import TEST_XLA_FLAGS, needs_fashion_mnist
from tests.test_shipped_model import stated_test_accuracy

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'notebooks' / 'vit_jax.ipynb'
FIGURES = ('predictions.png', 'attention_rollout_0.png',
           'attention_rollout_3.png', 'posemb_similarity.png',
           'mean_attention_distance.png', 'embedding_pcs.png', 'digits.png',
           'finetune_loss.png')
_CHECK_CELL = 'import sys; print("KERNEL_PREFIX=" + sys.prefix)'


def _text(nb) -> str:
  """Everything the code cells printed, stdout and stderr."""
  return ''.join(out.get('text', '') for cell in nb.cells
                 if cell.cell_type == 'code' for out in cell.get('outputs', []))


def _execute(tmp_path, monkeypatch, **env):
  """Runs the notebook from scratch (its committed outputs dropped, the new
  ones kept in memory only); returns it, executed."""
  kernels = tmp_path / 'jupyter'
  kernelspec.install(prefix=str(kernels), kernel_name='python3')
  monkeypatch.setenv('JUPYTER_PATH', str(kernels / 'share' / 'jupyter'))
  # The notebook computes more than it compiles: its kernel gets XLA's
  # optimisations back (conftest turns them off for the other tests).
  user_flags = os.environ.get('XLA_FLAGS', '').replace(TEST_XLA_FLAGS, '')
  if user_flags.strip():
    monkeypatch.setenv('XLA_FLAGS', user_flags.strip())
  else:
    monkeypatch.delenv('XLA_FLAGS', raising=False)
  for key, value in env.items():
    monkeypatch.setenv(key, value)

  nb = nbformat.read(NOTEBOOK, as_version=4)
  for cell in nb.cells:  # The committed outputs: computed again here.
    if cell.cell_type == 'code':
      cell.outputs, cell.execution_count = [], None
  nb.cells.append(nbformat.v4.new_code_cell(_CHECK_CELL))
  client = nbclient.NotebookClient(
      nb, kernel_name='python3', timeout=300,
      resources={'metadata': {'path': str(NOTEBOOK.parent)}})
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    pytest.fail(f'A notebook cell failed:\n{e}')
  text = _text(nb)
  assert f'KERNEL_PREFIX={sys.prefix}\n' in text, (
      'The kernel did not run in the same Python environment as pytest.')
  return nb, text


def _assert_figures(out_dir):
  for name in FIGURES:
    path = out_dir / name
    assert path.is_file(), f'{name} was not written'
    with Image.open(path) as img:
      assert img.format == 'PNG'
      assert min(img.size) > 100, (name, img.size)


def _images(nb) -> list:
  return [o for cell in nb.cells if cell.cell_type == 'code'
          for o in cell.get('outputs', []) if 'image/png' in o.get('data', {})]


def _number(text, pattern) -> float:
  match = re.search(pattern, text)
  assert match, f'{pattern!r} not in the notebook output:\n{text}'
  return float(match.group(1))


@needs_fashion_mnist
def test_notebook_runs(tmp_path, monkeypatch):
  out = tmp_path / 'figures'
  nb, text = _execute(tmp_path, monkeypatch, VIT_NOTEBOOK_OUT=str(out))
  _assert_figures(out)
  # The shipped model on the whole test set: the accuracy its README states.
  # (Same params and images; 1 device here against the trainer's 2 may flip
  # a borderline image or two.)
  accuracy = _number(text, r'test accuracy ([\d.]+)% on 10000 Fashion-MNIST')
  assert abs(accuracy - stated_test_accuracy()) <= 0.03, accuracy
  assert 'most often mistaken for' in text
  # A trained model: rollout concentrated, position embeddings with 2-D
  # structure (same row or column more alike than neither).
  peaks = [float(p) for p in
           re.findall(r'the most attended patch holds ([\d.]+)%', text)]
  # Uniform: 1/49 = 2.0%. The shipped model: 4.2, 2.9 (a bag, the whole
  # image), 3.6, 3.7.
  assert len(peaks) == 4 and min(peaks) > 2.5 and sum(peaks) / 4 > 3.0, peaks
  row = _number(text, r'same row (-?[\d.]+)')
  neither = _number(text, r'neither (-?[\d.]+)')
  assert row > neither + 0.1, (row, neither)
  # Transfer: the fine-tuned model beats its new head and training from
  # scratch.
  before = _number(text, r'before fine-tuning \(new head\): ([\d.]+)%')
  after = _number(text, r'after fine-tuning: accuracy ([\d.]+)%')
  scratch = _number(text, r'from random weights: ([\d.]+)%')
  assert after > max(before, scratch) + 10, (before, after, scratch)
  # Offline it says it skipped; online it names ImageNet classes.
  assert ('skipped the published ImageNet ViT' in text or
          'ViT-Ti_16 on grace_hopper.jpg' in text), text
  # Predictions, 4 rollouts, posemb, distance, filters, digits, losses.
  assert len(_images(nb)) >= 10, len(_images(nb))


def test_committed_notebook_shows_its_outputs():
  """As GitHub shows it: every code cell with its output, the figures, no
  error, and the numbers of the model shipped now (a stale copy fails here;
  README: how to refresh it). Small enough to keep in the repository."""
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = [cell for cell in nb.cells if cell.cell_type == 'code']
  assert all(cell.get('outputs') for cell in code), (
      'Every code cell prints or draws something: execute the notebook '
      'and commit it with its outputs (README, "The notebook").')
  assert not any(o.output_type == 'error' for cell in code
                 for o in cell.outputs)
  assert len(_images(nb)) >= 10, len(_images(nb))
  text = _text(nb)
  accuracy = _number(text, r'test accuracy ([\d.]+)% on 10000 Fashion-MNIST')
  assert abs(accuracy - stated_test_accuracy()) <= 0.03, accuracy
  assert NOTEBOOK.stat().st_size < 1_500_000, NOTEBOOK.stat().st_size
