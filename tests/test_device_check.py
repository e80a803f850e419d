"""The prepared accelerator check (experiments/device_check.sh) runs on the CPU at small sizes and prints one
JSON line with every step's numbers and no step's error."""
import json
import os
import subprocess
import sys

from conftest import CACHE_DIR, ROOT


def test_device_check_prints_one_json_line_of_every_step():
  env = {**os.environ, 'PYTHON': sys.executable, 'AELAB_TEST_CACHE': CACHE_DIR}
  done = subprocess.run(['bash', 'experiments/device_check.sh', '--small'], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result['platform'] == 'cpu' and result['small'] is True
  assert not [name for name in ('main_job', 'model_axis') if 'error' in result[name]], result
  assert 0 < result['main_job']['warm_s'] and 0 < result['main_job']['cold_s']
  axis = result['model_axis']
  assert axis['axis_models'] == 2
  for dtype in ('float32', 'bfloat16'):
    assert axis[f'{dtype}_one_model_examples_per_s'] > 0 and axis[f'{dtype}_axis_gain'] > 0
