"""The command-line tools' shared edges (vit_jax/command_line.py,
vit_jax/quiet_tf.py): every documented config field settable with
--config.FIELD=VALUE, a bad override as one `error:` line naming the field
and the nearest one, no library chatter on a CPU host."""
import ast
import os
import re
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from tests.conftest import ROOT
from vit_jax import command_line
from vit_jax import quiet_tf
from vit_jax.configs import common

# Config files whose own fields (not the base config's) the README documents
# in their sections, with the argument they are loaded with here.
_OWN_FIELDS_CONFIGS = (('lit.py', None), ('augreg.py', 'R_Ti_16'),
                       ('default.py', None))
# `config.X` in prose that is no field: files named config.json / config.py.
_NOT_FIELDS = ('json', 'py')
# Docstrings about the original release's configs (`python -m vit_jax.main`),
# whose fields `vit_jax/original/translate.py` reads, not this trainer.
_ORIGINAL_CONFIG_DOCS = ('vit_jax/original/', 'vit_jax/configs/vit.py',
                         'vit_jax/configs/augreg.py',
                         'vit_jax/configs/inference_time.py')


def _has(config, path: str) -> bool:
  node = config
  for key in path.split('.'):
    if not hasattr(node, 'keys') or key not in node:
      return False
    node = node[key]
  return True


def _documented_fields():
  """{field path: where} of every `config.PATH` / `--config.PATH` in the
  READMEs and in the package's and configs' docstrings, and every field of
  the README's augmentation table."""
  found = {}

  def add(text, where):
    for path in re.findall(r'\bconfig\.([a-z_][\w.]*[a-z0-9_])', text):
      if path.split('.')[0] not in _NOT_FIELDS:
        found.setdefault(path, where)

  for name in ('README.md', 'benchmarks/README.md'):
    add((ROOT / name).read_text(), name)
  table = (ROOT / 'README.md').read_text().split(
      '| field | what it does |')[1].split('\n\n')[0]
  for path in re.findall(r'^\| `([\w.]+)', table, re.M):
    found.setdefault(path, 'README.md (augmentation options)')
  for path in [*(ROOT / 'vit_jax').rglob('*.py'),
               *(ROOT / 'configs').glob('*.py')]:
    if str(path.relative_to(ROOT)).startswith(_ORIGINAL_CONFIG_DOCS):
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)):
        add(ast.get_docstring(node) or '', str(path.relative_to(ROOT)))
  return found


def test_documented_fields_are_settable():
  """Each documented field is one the command line can override: a field of
  the base config (so of every config), or of the config file whose section
  documents it (configs/lit.py's captions, configs/augreg.py's
  pretrained_dir, the default job's model)."""
  fields = _documented_fields()
  assert {'data_threads', 'tfds_download', 'pp.randaug', 'mixup.p',
          'image_checkpoint'} <= set(fields), sorted(fields)
  base = common.base_config()
  own = [common.config_file(str(ROOT / 'configs' / name), arg)
         for name, arg in _OWN_FIELDS_CONFIGS]
  missing = {path: where for path, where in fields.items()
             if not _has(base, path) and not any(_has(c, path) for c in own)}
  assert not missing, missing
  assert base.data_threads == 0 and base.tfds_download is False


def _override_error(argv):
  """The exception main.py's --config flag raises for `argv`, in this
  process (a FlagValues of its own)."""
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  with pytest.raises(Exception) as raised:
    flag_values(argv)
    flag_values.config  # pylint: disable=pointless-statement
  return raised.value


@pytest.mark.parametrize('override, says', [
    ('totl_steps=5', "unknown config field 'totl_steps' (did you mean "
                     "'total_steps'?) in a --config.FIELD=VALUE override; see "
                     'configs/testing.py for its fields.'),
    ('model.transformer.num_layrs=2',
     "unknown config field 'model.transformer.num_layrs' (did you mean "
     "'model.transformer.num_layers'?) in"),
    ('data_thread=2', "'data_thread' (did you mean 'data_threads'?)"),
    ('zzzqqq=1', "unknown config field 'zzzqqq' in a"),
    ('model.hidden_size.x=1', "unknown config field 'model.hidden_size.x' in"),
])
def test_unknown_field_is_one_clean_line(override, says):
  argv = ['main.py', '--config=configs/testing.py', f'--config.{override}']
  line, status = command_line.error_line(_override_error(argv), argv)
  assert status == command_line.USAGE == 2
  assert line.startswith('error: ') and says in line, line
  assert '\n' not in line and '\\' not in line and '"' not in line, line


def test_unknown_flags_are_one_line():
  line, status = command_line.error_line(
      flags.UnrecognizedFlagError('workdr', '', suggestions=['workdir']),
      ['evaluate', '--workdr=x'])
  assert status == 2 and line == ('error: unknown flag --workdr (did you mean '
                                  '--workdir?); --helpshort lists the flags.')


# A misspelled config override, end to end. main.py and the benchmark have
# --config: the field and its nearest name; evaluate stands for the tools that
# have none (each a few seconds of imports: the others are checked to parse
# their flags with the same helper below).
_CLI_CASES = {
    'main.py': ('--workdir=unused', '--config.totl_steps=1'),
    'vit_jax.benchmark': ('--config=configs/testing.py',
                          '--config.totl_steps=1'),
    'vit_jax.evaluate': ('--config.totl_steps=1',),
}


def test_every_tool_parses_its_flags_with_the_shared_helper():
  """Each CLI (tests/test_layout.py's list) and main.py hand
  command_line.parse_flags to app.run, so a bad flag or override is one
  `error:` line for all of them, as for those run below."""
  from tests.test_layout import CLIS  # pylint: disable=g-import-not-at-top
  paths = [ROOT / 'main.py'] + [
      ROOT / (name.replace('.', '/') + '.py') for name in sorted(CLIS)]
  for path in paths:
    calls = [node for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func) ==
             'app.run']
    assert [ast.unparse(k.value) for c in calls for k in c.keywords
            if k.arg == 'flags_parser'] == ['command_line.parse_flags'], path


@pytest.mark.parametrize('cli', _CLI_CASES)
def test_cli_answers_a_misspelled_override_in_one_line(cli):
  command = ([str(ROOT / cli)] if cli.endswith('.py') else ['-m', cli])
  proc = subprocess.run([sys.executable, *command, *_CLI_CASES[cli]],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stdout == ''
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-3000:]
  if cli in ('main.py', 'vit_jax.benchmark'):
    assert lines[0].startswith(
        "error: unknown config field 'totl_steps' (did you mean "
        "'total_steps'?) in a --config.FIELD=VALUE override; see configs/"), (
            lines[0])
  else:
    assert lines[0] == (f'error: unknown flag --config.totl_steps: {cli} has '
                        'no --config flag (it takes no experiment config); '
                        '--helpshort lists its flags.')


# A line of absl's or TensorFlow's C++ logging ("I0000 00:00:... port.cc:153]
# oneDNN custom operations are on", "E0000 ... failed call to cuInit") or of
# absl's Python logging ("I1207 18:15:38.742926 ... xla_bridge.py:849] Unable
# to initialize backend 'tpu'"), or absl's pre-init notice.
LIBRARY_LOG_LINE = re.compile(
    r'^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|WARNING: All log '
    r'messages before absl::InitializeLog)', re.M)


def test_library_log_line_pattern():
  assert LIBRARY_LOG_LINE.search(
      'x\nI0000 00:00:1796667327.055244    9301 port.cc:153] oneDNN custom')
  assert LIBRARY_LOG_LINE.search(
      "I1207 18:15:38.742926 139812909149056 xla_bridge.py:849] Unable to")
  assert not LIBRARY_LOG_LINE.search('error: I0000 is not a line start')


def test_absl_logs_after_a_quiet_first_import_of_absl(tmp_path):
  """A program whose first import of absl is TensorFlow's own (inside
  quiet_tf's quiet import; here a stand-in package) still gets absl's log
  lines on stderr afterwards (its handler once kept a stream closed at the
  end of that import). A fresh interpreter: absl is imported here already."""
  (tmp_path / 'fake_tf').mkdir()
  (tmp_path / 'fake_tf' / '__init__.py').write_text('import absl.logging\n')
  program = ('import sys; sys.path.insert(0, sys.argv[1]); '
             "from vit_jax import quiet_tf; quiet_tf.install('fake_tf'); "
             'import fake_tf; from absl import app, logging; '
             "app.run(lambda _: logging.warning('absl after the import'))")
  proc = subprocess.run([sys.executable, '-c', program, str(tmp_path)],
                        cwd=ROOT, capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'absl after the import' in proc.stderr, proc.stderr[-3000:]
  assert 'Logging error' not in proc.stderr, proc.stderr[-3000:]


def test_tensorflow_is_imported_without_its_cpp_lines(tmp_path, monkeypatch,
                                                      capfd):
  """quiet_tf's import hook, on a stand-in for tensorflow that writes as TF's
  C++ does (to descriptor 2, at import) and as Python does (sys.stderr): the
  first is dropped, the second kept; the next import is an ordinary one.
  (With the real TensorFlow, in a fresh process: the evaluate CLI's test.)"""
  package = tmp_path / 'fake_tf'
  package.mkdir()
  (package / '__init__.py').write_text(
      'import os, sys\n'
      "os.write(2, b'I0000 00:00:1.5 7 port.cc:153] oneDNN custom ops\\n')\n"
      "print('a Python warning', file=sys.stderr)\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '2')
  quiet_tf.install('fake_tf')
  try:
    import fake_tf  # pylint: disable=g-import-not-at-top,import-outside-toplevel,unused-import
  finally:
    quiet_tf.uninstall('fake_tf')
    sys.modules.pop('fake_tf', None)
  err = capfd.readouterr().err
  assert 'a Python warning' in err and not LIBRARY_LOG_LINE.search(err), err
  assert not quiet_tf._finders('fake_tf')  # pylint: disable=protected-access
  import fake_tf  # pylint: disable=g-import-not-at-top,import-outside-toplevel,reimported,unused-import
  assert LIBRARY_LOG_LINE.search(capfd.readouterr().err)
