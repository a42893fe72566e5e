"""Splitting the CPU into one JAX device per core (vit_jax/train/cpu_devices.py)."""
import os
import re
import subprocess

import pytest

from configs import testing
from tests.conftest import TEST_XLA_FLAGS, main_command
from vit_jax.train import cpu_devices


def _config(**overrides):
  config = testing.get_config()
  config.update(overrides)
  return config


@pytest.mark.parametrize('overrides, cores, expected', [
    (dict(batch_size=64, eval_batch_size=1000), 8, 8),
    (dict(batch_size=64, eval_batch_size=1000), 3, 2),
    (dict(batch_size=64, eval_batch_size=1000), 1, 1),
    (dict(batch_size=36, eval_batch_size=36), 16, 12),  # 3 x 4.
    (dict(batch_size=12, eval_batch_size=12, accum_steps=3), 4, 4),
    (dict(batch_size=12, eval_batch_size=12, accum_steps=4), 4, 3),
    (dict(batch_size=64, eval_batch_size=64,
          mesh=(('data', -1), ('fsdp', 4))), 6, 4),
    (dict(batch_size=7, eval_batch_size=7), 4, 1),  # Nothing fits.
])
def test_fitting_count_splits_every_batch_and_the_mesh(overrides, cores,
                                                       expected):
  assert cpu_devices.fitting_count(_config(**overrides), cores) == expected


def test_configure_leaves_explicit_settings_alone(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  assert cpu_devices.configure(_config()) is None
  monkeypatch.delenv('XLA_FLAGS')
  assert cpu_devices.configure(_config(), multi_process=True) is None
  with pytest.raises(ValueError, match='cpu_devices=-2'):
    cpu_devices.configure(_config(cpu_devices=-2))


def test_usable_cores_without_an_affinity_mask(monkeypatch):
  monkeypatch.delattr(os, 'sched_getaffinity')  # As on macOS.
  monkeypatch.setattr(os, 'cpu_count', lambda: 6)
  assert cpu_devices.usable_cores() == 6


def _devices_used(tmp_path, data_dir, *overrides):
  """Starts the testing job with no device count in XLA_FLAGS; the device
  count its start line reports (the run is killed there: the split is made
  by then). XLA_FLAGS keeps only the suite's -O0 (conftest.TEST_XLA_FLAGS),
  which configure() ignores: the start is ~2 s sooner than at XLA's default
  level."""
  env = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)
  proc = subprocess.Popen(
      main_command(tmp_path, data_dir, *overrides), env=env,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    lines = []
    for line in proc.stderr:  # Ends when the process does.
      lines.append(line)
      found = re.search(r'^Starting at step 0 of \d+: .* on (\d+) devices',
                        line)
      if found:
        return int(found.group(1))
    raise AssertionError(''.join(lines)[-3000:])
  finally:
    proc.kill()
    proc.wait(timeout=60)


def test_main_splits_the_cpu_per_core_or_as_configured(tmp_path,
                                                       image_folder):
  expected = cpu_devices.fitting_count(_config(), cpu_devices.usable_cores())
  assert _devices_used(tmp_path / 'auto', image_folder) == expected
  assert _devices_used(tmp_path / 'four', image_folder,
                       '--config.cpu_devices=4') == 4
