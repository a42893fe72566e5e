"""Scale-out: several processes, FSDP, restoring across mesh shapes.

The runs compared are conftest's SCALE_OVERRIDES runs on 2 CPU devices, the
fewest that shard: one process of 2 devices (data parallel, or with the
state sharded over both: fsdp=2) and two processes of one device each.
"""
import json
import os
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from tests.conftest import ROOT, SCALE_OVERRIDES, build_once, main_env, \
    read_records, run_main, run_processes, train_in_process, python_command

_FSDP = "--config.mesh=(('data', -1), ('fsdp', 2))"


@pytest.fixture(scope='session')
def fsdp_run(tmp_path_factory, image_folder):
  """The workdir of SCALE_OVERRIDES on 2 CPU devices with the params and
  optimizer state sharded over both (fsdp=2), once per session (read-only)."""
  def train(workdir):
    proc = run_main(workdir, image_folder, *SCALE_OVERRIDES, _FSDP, devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
  return build_once(tmp_path_factory, 'fsdp_run', train)


def _losses(workdir):
  return np.array([r['train/loss'] for r in read_records(workdir)
                   if 'train/loss' in r])


def _assert_params_close(a_dir, b_dir, atol=2e-3):
  """Equal up to float reduction order, which Adam can amplify to ~lr for
  parameters whose gradient is ~0 (its update is m / sqrt(v))."""
  with np.load(a_dir / 'params.npz') as a, np.load(b_dir / 'params.npz') as b:
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
      np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


def test_two_processes_match_one_process(two_process_run, two_device_run):
  assert len(_losses(two_device_run)) == 40
  np.testing.assert_allclose(_losses(two_process_run), _losses(two_device_run),
                             rtol=1e-3)
  _assert_params_close(two_device_run, two_process_run)


def test_fsdp_matches_data_parallel(fsdp_run, two_device_run):
  mesh = json.loads((fsdp_run / 'config.json').read_text())['mesh']
  assert mesh == [['data', -1], ['fsdp', 2]]  # Sharded over both devices.
  np.testing.assert_allclose(_losses(fsdp_run), _losses(two_device_run),
                             rtol=1e-3)
  _assert_params_close(two_device_run, fsdp_run)


def _cut_to_step_20(src, dst):
  """A copy of workdir `src` as if its run had stopped after step 20."""
  shutil.copytree(src, dst)
  shutil.rmtree(dst / 'checkpoints' / '40')
  os.remove(dst / 'params.npz')


def test_restore_across_meshes(tmp_path, image_folder, fsdp_run,
                               two_device_run, capfd):
  """A checkpoint sharded over 2 devices (fsdp=2) resumed on 1 device (in
  this process), and one of a 2-device process resumed in 2 processes of 1
  device with fsdp=2: each ends where its uninterrupted run did."""
  _cut_to_step_20(fsdp_run, tmp_path / 'fsdp_to_one')
  capfd.readouterr()
  train_in_process(tmp_path / 'fsdp_to_one', image_folder, *SCALE_OVERRIDES)
  err = capfd.readouterr().err
  assert 'Starting at step 20 of 40' in err, err[-3000:]
  assert 'on 1 devices' in err
  _assert_params_close(fsdp_run, tmp_path / 'fsdp_to_one')

  _cut_to_step_20(two_device_run, tmp_path / 'one_to_two')
  (_, err), _ = run_processes(tmp_path / 'one_to_two', image_folder,
                              *SCALE_OVERRIDES, _FSDP)
  assert 'Starting at step 20 of 40' in err
  assert 'in 2 process(es), mesh data=1 fsdp=2' in err
  _assert_params_close(two_device_run, tmp_path / 'one_to_two')


def test_vit_h14_fsdp_compiles_with_an_eighth_of_the_state():
  """ViT-H/14 train step on 8 CPU devices, fsdp=8: params + Adam moments.

  Compiled with stacked blocks (--config.scan: one block to compile, not
  32); the default per-block params shard to the same bytes per device.
  """
  script = textwrap.dedent('''
      import json, sys
      sys.path.insert(0, sys.argv[1])
      from vit_jax.configs import common
      from vit_jax.train import steps
      config = common.base_config()
      config.model = common.model_from_variant('ViT-H_14')
      config.mesh = (('data', -1), ('fsdp', 8))
      config.batch_size = 8
      for scan in (True, False):  # Stacked params, then per-block ones.
        config.scan = scan
        print(json.dumps(steps.compile_report(config, num_classes=1000,
                                              compile_step=scan)))
  ''')
  proc = subprocess.run(python_command('-c', script, str(ROOT)),
                        env=main_env(8),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report, unrolled = (json.loads(line)
                      for line in proc.stdout.strip().splitlines()[-2:])
  assert unrolled['state_bytes'] == report['state_bytes']
  assert unrolled['state_bytes_per_device'] == report['state_bytes_per_device']
  print(f"ViT-H/14 fsdp=8: state {report['state_bytes'] / 2**30:.2f} GiB, "
        f"{report['state_bytes_per_device'] / 2**30:.3f} GiB per device "
        f"({report['state_bytes_per_device'] / report['state_bytes']:.4f}); "
        f"compiled arguments {report['compiled_argument_bytes'] / 2**30:.3f}"
        ' GiB per device')
  assert report['state_bytes'] > 7e9  # 632M params x (param + 2 moments).
  assert report['state_bytes_per_device'] <= report['state_bytes'] / 8 * 1.05
  assert report['compiled_argument_bytes'] <= (
      report['state_bytes'] / 8 * 1.05 + 8 * 224 * 224 * 3 * 4)
