"""The package's shape: no import circles, thin CLIs, and the old import
paths of the README's library lines still working.

restructure: keep-old-imports (this file tests the old paths on purpose; the
package restructuring script leaves it as it is).
"""
import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'vit_jax'
# `python -m vit_jax.NAME` entry points.
CLIS = {f'vit_jax.{n}' for n in ('predict', 'evaluate', 'export', 'visualize',
                                 'zeroshot', 'benchmark', 'main', 'features')}


def _modules():
  """{dotted name: path} of every module of the package."""
  out = {}
  for path in PACKAGE.rglob('*.py'):
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
      parts.pop()
    out['.'.join(parts)] = path
  return out


def _imports(path, modules):
  """Package modules `path` imports (at top level or in a function)."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      for alias in node.names:
        name = alias.name
        while name and name not in modules:
          name = name.rpartition('.')[0]
        if name:
          out.add(name)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for alias in node.names:
        full = f'{node.module}.{alias.name}'
        if full in modules:
          out.add(full)
        elif node.module in modules:
          out.add(node.module)
  return out


def _graph():
  modules = _modules()
  return {name: _imports(path, modules) - {name}
          for name, path in modules.items()}


def _cycle(graph):
  """One import circle as [a, b, ..., a], or None."""
  state = {}

  def visit(node, path):
    state[node] = 'open'
    for child in sorted(graph[node]):
      if state.get(child) == 'open':
        return path[path.index(child):] + [child]
      if child not in state:
        found = visit(child, path + [child])
        if found:
          return found
    state[node] = 'done'
    return None

  for start in sorted(graph):
    if start not in state:
      found = visit(start, [start])
      if found:
        return found
  return None


def test_cycle_finder_finds_a_circle():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == [
      'a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_circles():
  cycle = _cycle(_graph())
  assert cycle is None, ' -> '.join(cycle)


def test_only_entry_points_import_command_line_modules():
  graph = _graph()
  assert CLIS <= set(graph)
  # A CLI imports the library (`inference`, `evaluators`), never another CLI;
  # the library and the configs import no CLI.
  offenders = {m: sorted(graph[m] & CLIS) for m in graph if graph[m] & CLIS}
  assert not offenders, offenders
  for config in (ROOT / 'configs').glob('*.py'):
    assert not _imports(config, _modules()) & CLIS, config


def test_configs_do_not_edit_sys_path():
  for path in [ROOT / 'main.py', *(ROOT / 'configs').glob('*.py'),
               *PACKAGE.rglob('*.py')]:
    assert 'sys.path.insert' not in path.read_text(), path


@pytest.mark.parametrize('module, names', [
    ('vit_jax.models', ['VisionTransformer', 'MlpMixer', 'LitModel',
                        'create', 'get_model']),
    ('vit_jax.configs.models', ['MODEL_CONFIGS', 'get_model_config']),
    ('vit_jax.checkpoint', ['load_npz', 'save_npz', 'load_pretrained',
                            'load_safetensors', 'save_safetensors',
                            'load_params', 'CheckpointMismatchError',
                            'stack_blocks', 'unstack_blocks']),
    ('vit_jax.checkpoint.augreg', ['read_index', 'best_filename',
                                   'model_config', 'checkpoint_path']),
    ('vit_jax.preprocess', ['get_tokenizer']),
    ('vit_jax.models_lit', ['get_tokenizer', 'LitModel']),
    ('vit_jax.zeroshot', ['class_embeddings', 'TEMPLATES', 'load']),
    ('vit_jax.evaluators.fewshot', ['FewShotEvaluator']),
    ('vit_jax.remote', ['check']),
    ('vit_jax.predict', ['load_model', 'load_image', 'predict']),
    ('vit_jax.evaluate', ['evaluate_split', 'make_eval_step']),
])
def test_readme_import_paths_keep_working(module, names):
  loaded = importlib.import_module(module)
  missing = [n for n in names if not hasattr(loaded, n)]
  assert not missing, f'{module} lacks {missing}'
