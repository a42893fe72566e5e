"""Scale-out: several processes, FSDP, restoring across mesh shapes."""
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np

from tests.conftest import ROOT, SHORT_OVERRIDES as _SHORT, main_command, \
    main_env, read_records, run_main

_FSDP = "--config.mesh=(('data', -1), ('fsdp', 8))"


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _run_processes(workdir, data_dir, *overrides, num_processes=2,
                   devices_each=4):
  """`num_processes` local processes joined by jax.distributed."""
  port = _free_port()
  env = main_env(devices_each)
  procs = [subprocess.Popen(
      main_command(workdir, data_dir, *overrides,
                   f'--coordinator_address=127.0.0.1:{port}',
                   f'--num_processes={num_processes}', f'--process_id={i}'),
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(num_processes)]
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  return outputs


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


def test_two_processes_match_one_process(tmp_path, image_folder,
                                        short_run_8_devices):
  one = short_run_8_devices  # _SHORT, one process of 8 devices.
  two = tmp_path / 'two'
  _run_processes(two, image_folder, *_SHORT)
  assert len(_losses(one)) == 20
  np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-3)
  _assert_params_close(one, two)


def test_fsdp_matches_data_parallel(tmp_path, image_folder,
                                   short_run_8_devices):
  data_parallel = short_run_8_devices  # _SHORT on 8 devices.
  proc = run_main(tmp_path / 'fsdp', image_folder, *_SHORT, _FSDP, devices=8)
  assert proc.returncode == 0, proc.stderr[-3000:]
  np.testing.assert_allclose(_losses(tmp_path / 'fsdp'),
                             _losses(data_parallel), rtol=1e-3)
  _assert_params_close(data_parallel, tmp_path / 'fsdp')


def test_restore_across_meshes(tmp_path, image_folder):
  """8-device FSDP checkpoint -> 1 device, and 1 device -> 2x4 processes."""
  args = ('--config.total_steps=6', '--config.checkpoint_every=3',
          '--config.eval_every=100', '--config.batch_size=16')
  ref = tmp_path / 'ref'
  assert run_main(ref, image_folder, *args).returncode == 0

  def cut_to_step_3(src, dst):
    shutil.copytree(src, dst)
    shutil.rmtree(dst / 'checkpoints' / '6')
    os.remove(dst / 'params.npz')

  eight = tmp_path / 'eight'
  assert run_main(eight, image_folder, *args, _FSDP,
                  devices=8).returncode == 0
  cut_to_step_3(eight, tmp_path / 'eight_to_one')
  proc = run_main(tmp_path / 'eight_to_one', image_folder, *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Starting at step 3' in proc.stderr
  _assert_params_close(ref, tmp_path / 'eight_to_one')

  cut_to_step_3(ref, tmp_path / 'one_to_two')
  (_, err), _ = _run_processes(tmp_path / 'one_to_two', image_folder, *args,
                               _FSDP)
  assert 'Starting at step 3' in err
  _assert_params_close(ref, tmp_path / 'one_to_two')


def test_vit_h14_fsdp_compiles_with_an_eighth_of_the_state(tmp_path):
  """ViT-H/14 train step on 8 CPU devices, fsdp=8: params + Adam moments."""
  script = textwrap.dedent('''
      import json, sys
      sys.path.insert(0, sys.argv[1])
      from vit_jax.configs import common
      from vit_jax.train import steps
      config = common.base_config()
      config.model = common.model_from_variant('ViT-H_14')
      config.mesh = (('data', -1), ('fsdp', 8))
      config.batch_size = 8
      for scan in (False, True):  # Per-block params, then stacked ones.
        config.scan = scan
        print(json.dumps(steps.compile_report(config, num_classes=1000)))
  ''')
  proc = subprocess.run([sys.executable, '-c', script, str(ROOT)],
                        env=main_env(8),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  import json  # pylint: disable=g-import-not-at-top
  report, scanned = (json.loads(line)
                     for line in proc.stdout.strip().splitlines()[-2:])
  # Stacked params (--config.scan) shard to the same bytes per device.
  assert scanned['state_bytes'] == report['state_bytes']
  assert scanned['state_bytes_per_device'] == report['state_bytes_per_device']
  assert scanned['compiled_argument_bytes'] <= (
      report['compiled_argument_bytes'] * 1.01)
  print(f"ViT-H/14 fsdp=8: state {report['state_bytes'] / 2**30:.2f} GiB, "
        f"{report['state_bytes_per_device'] / 2**30:.3f} GiB per device "
        f"({report['state_bytes_per_device'] / report['state_bytes']:.4f}); "
        f"compiled arguments {report['compiled_argument_bytes'] / 2**30:.3f}"
        ' GiB per device')
  assert report['state_bytes'] > 7e9  # 632M params x (param + 2 moments).
  assert report['state_bytes_per_device'] <= report['state_bytes'] / 8 * 1.05
  assert report['compiled_argument_bytes'] <= (
      report['state_bytes'] / 8 * 1.05 + 8 * 224 * 224 * 3 * 4)
