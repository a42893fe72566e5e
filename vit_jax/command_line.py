"""What every command-line tool shares: its flag errors as one line, and the
libraries' INFO logs only for those who ask.

`main.py` and each `python -m vit_jax.NAME` tool hand `parse_flags` to absl's
`app.run`; main.py and the benchmark define `--config` with `define_config`.
A bad flag, config file or `--config.FIELD=VALUE` override then ends with one
`error:` line and exit status 2 (`USAGE`), not with absl's two-line `FATAL
Flags parsing error` or ml_collections' 40-line traceback, e.g.

  error: unknown config field 'totl_steps' (did you mean 'total_steps'?) in a
  --config.FIELD=VALUE override; see configs/default.py for its fields.

(one line). A config that names a hub checkpoint it cannot get is I/O, not
usage: its hub message, exit status 1.

After parsing, absl's log level is WARNING unless absl's own `--verbosity`
(`-v 0`: INFO) was given: under `app.run` it would be INFO, which shows JAX's
backend probing ("Unable to initialize backend 'tpu'") to every user of a CPU.
"""
import os
import re
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

USAGE = 2  # Exit status of a bad flag, config file or config field.
IO = 1  # A config's hub checkpoint that cannot be had (vit_jax.checkpoint.hub).

_OVERRIDE = re.compile(r'^--?(?:no)?config\.([^=]+)')
# ml_collections' suggestion, below the missing key in its KeyError.
_DID_YOU_MEAN = re.compile(r'Did you mean "([^"]+)" instead of')


def define_config(default, help_string):
  """`--config=FILE[:ARG]` with `--config.FIELD=VALUE` overrides (locked: no
  new fields). With a default file its overrides are applied here, while the
  flag is defined, so their errors end the process here too."""
  try:
    return config_flags.DEFINE_config_file('config', default, help_string,
                                           lock_config=True)
  except Exception as e:  # pylint: disable=broad-except  (all user input)
    _exit(e, sys.argv, default)


def parse_flags(argv):
  """absl's `flags_parser` for `app.run`: flag errors as one `error:` line."""
  try:
    rest = flags.FLAGS(argv)
    if 'config' in flags.FLAGS:
      flags.FLAGS.config  # pylint: disable=pointless-statement  (loads it)
  except Exception as e:  # pylint: disable=broad-except  (all user input)
    _exit(e, argv, _default_config())
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  return rest


def _default_config():
  """The --config flag's default file; None without one (or the flag)."""
  if 'config' not in flags.FLAGS:
    return None
  default = flags.FLAGS['config'].default_as_str.strip("'")
  return None if default == 'None' else default


def _exit(error, argv, default_config):
  line, status = error_line(error, argv, default_config)
  print(line, file=sys.stderr)
  sys.exit(status)


def error_line(error, argv, default_config=None):
  """(the `error:` line, exit status) for an exception of flag parsing."""
  if isinstance(error, (AttributeError, KeyError)):
    return _unknown_field(error, argv, default_config), USAGE
  hub_error = _hub_error(error)
  if hub_error:
    return f'error: {hub_error}', IO
  if isinstance(error, flags.UnrecognizedFlagError):
    return _unknown_flag(error, argv, default_config), USAGE
  lines = [l.strip() for l in str(error).strip().splitlines() if l.strip()]
  if any(l.startswith('Traceback') for l in lines):
    lines = [lines[0], lines[-1]]  # Which flag, and what went wrong.
  return 'error: ' + '\n  '.join(lines), USAGE  # Details below, indented.


def _message(error) -> str:
  """The text inside ml_collections' AttributeError(KeyError(text))."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  return str(error.args[0]) if error.args else str(error)


def _overrides(argv):
  """The FIELD of each --config.FIELD[=VALUE] in argv, in order."""
  return [m[1] for m in map(_OVERRIDE.match, argv) if m]


def _config_file(argv, default):
  """The config file the command loads: its --config=FILE[:ARG]'s FILE, or
  the default (relative to the working directory where it is below it)."""
  for i, arg in enumerate(argv):
    if arg in ('--config', '-config') and i + 1 < len(argv):
      return argv[i + 1].split(':')[0]
    if re.match(r'^--?config=', arg):
      return arg.split('=', 1)[1].split(':')[0]
  if default and not os.path.relpath(default).startswith('..'):
    return os.path.relpath(default)
  return default


def _unknown_field(error, argv, default_config) -> str:
  """`unknown config field 'a.b' (did you mean 'a.c'?) in ...`, one line;
  any other AttributeError or KeyError (a config file's own) as one line."""
  text = _message(error)
  key = text.splitlines()[0].strip().strip('\'"') if text else ''
  field = suggestion = None
  lookup = re.search(r'Attempting to lookup: (\S+)', text)
  if lookup:  # A field below one that has no fields (an int, say).
    field = lookup[1]
  for path in [] if lookup else _overrides(argv):
    parts = path.split('.')
    if key in parts:  # The first override through the missing key.
      field = path
      match = _DID_YOU_MEAN.search(text)
      if match:
        parts[parts.index(key)] = match[1]
        suggestion = '.'.join(parts)
      break
  config_file = _config_file(argv, default_config)
  if field is None:
    return (f'error: {config_file or "the config"}: {type(error).__name__}: '
            + ' '.join(text.split()))
  return (f"error: unknown config field '{field}'"
          + (f" (did you mean '{suggestion}'?)" if suggestion else '') +
          ' in a --config.FIELD=VALUE override; see '
          + (config_file or 'the config file') + ' for its fields.')


def _unknown_flag(error, argv, default_config) -> str:
  name = error.flagname
  if name.startswith('config.') and 'config' in flags.FLAGS:
    config_file = _config_file(argv, default_config)
    if config_file is None:  # The benchmark without --config.
      return (f'error: --{name} overrides a field of --config, which is not '
              'given: add --config=FILE[:ARG] (e.g. configs/default.py).')
    return (f"error: unknown config field '{name[len('config.'):]}' in a "
            f'--config.FIELD=VALUE override; see {config_file} for its '
            'fields.')
  if name.startswith('config.'):  # This tool has no --config.
    return (f'error: unknown flag --{name}: {_tool(argv)} has no --config '
            'flag (it takes no experiment config); --helpshort lists its '
            'flags.')
  match = re.search(r'Did you mean: (.+?) \?', str(error))
  hint = (f' (did you mean --{match[1].split(",")[0].strip()}?)'
          if match else '')
  return f'error: unknown flag --{name}{hint}; --helpshort lists the flags.'


def _tool(argv) -> str:
  """`python -m vit_jax.NAME`'s name, for messages."""
  main = sys.modules.get('__main__')
  spec = getattr(main, '__spec__', None)
  return spec.name if spec else (argv[0] if argv else 'this tool')


def _hub_error(error):
  """The message of a hub.HubError behind `error` (a config file that names
  an hf-hub: repo it cannot get), else None. By name: importing the hub
  module here would slow every start."""
  while error is not None:
    if type(error).__name__ == 'HubError':
      # config_flags re-raises it with the traceback in the message: the
      # last line holds the hub's own.
      return str(error).strip().splitlines()[-1].split('HubError: ')[-1]
    error = error.__cause__ or error.__context__
  return None
