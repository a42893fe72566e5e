"""Runs notebooks/vit_jax.ipynb top to bottom and checks the figures it writes.

The notebook is executed with nbclient in a kernel of this very Python (a
`python3` kernelspec written to a temporary dir that JUPYTER_PATH puts first),
from notebooks/ as on a user's machine. Its environment comes from ours:
VIT_NOTEBOOK_OUT sends the PNGs to tmp_path, VIT_NOTEBOOK_REFERENCE (second
test) points it at an empty dir to exercise the no-checkpoint fallback.
"""
from pathlib import Path
import sys

from ipykernel import kernelspec
import nbclient
import nbformat
from PIL import Image
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'notebooks' / 'vit_jax.ipynb'
REFERENCE_CHECKPOINT = REPO.parent / 'shared' / 'reference' / 'vit_s16_2blocks.npz'
FIGURES = ('attention_rollout_0.png', 'attention_rollout_1.png',
           'posemb_similarity.png', 'mean_attention_distance.png',
           'embedding_pcs.png', 'training_loss.png')
_CHECK_CELL = 'import sys; print("KERNEL_PREFIX=" + sys.prefix)'


def _text(nb) -> str:
  """Everything the code cells printed, stdout and stderr."""
  return ''.join(out.get('text', '') for cell in nb.cells
                 if cell.cell_type == 'code' for out in cell.get('outputs', []))


def _execute(tmp_path, monkeypatch, **env):
  """Runs the notebook (outputs kept in memory only); returns it, executed."""
  kernels = tmp_path / 'jupyter'
  kernelspec.install(prefix=str(kernels), kernel_name='python3')
  monkeypatch.setenv('JUPYTER_PATH', str(kernels / 'share' / 'jupyter'))
  for key, value in env.items():
    monkeypatch.setenv(key, value)

  nb = nbformat.read(NOTEBOOK, as_version=4)
  assert not any(cell.get('outputs') for cell in nb.cells
                 if cell.cell_type == 'code'), (
                     'Store the notebook without outputs.')
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


def test_notebook_runs(tmp_path, monkeypatch):
  out = tmp_path / 'figures'
  monkeypatch.delenv('VIT_NOTEBOOK_REFERENCE', raising=False)
  nb, text = _execute(tmp_path, monkeypatch, VIT_NOTEBOOK_OUT=str(out))
  _assert_figures(out)
  # Uses the shared reference checkpoint wherever it is laid out beside the
  # repo, and says loudly when it is not.
  if REFERENCE_CHECKPOINT.is_file():
    assert 'Fine-tuning from checkpoint' in text, text
  else:
    assert 'FALLBACK' in text, text
  assert 'after fine-tuning: accuracy' in text
  # Inline figures: the digits, the loss curve and the visualize PNGs.
  images = [o for cell in nb.cells if cell.cell_type == 'code'
            for o in cell.get('outputs', []) if 'image/png' in o.get('data', {})]
  assert len(images) >= 2 + 5, len(images)


def test_notebook_runs_without_reference_checkpoint(tmp_path, monkeypatch):
  """The fallback path: fresh weights of the 'testing' preset."""
  out = tmp_path / 'figures'
  empty = tmp_path / 'no_reference'
  empty.mkdir()
  _, text = _execute(tmp_path, monkeypatch, VIT_NOTEBOOK_OUT=str(out),
                     VIT_NOTEBOOK_REFERENCE=str(empty))
  assert 'FALLBACK' in text, text
  _assert_figures(out)
