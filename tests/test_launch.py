"""The launcher: a sweep's groups as submitit jobs on its local executor; a rerun submits nothing."""
import json
import os
import sys

import pytest

from aelab.train import sweep
from conftest import ROOT, load_config, small

sys.path.insert(0, str(ROOT))  # `launch` is a folder of the repository, not of the installed package
from launch import submit  # noqa: E402

submitit = pytest.importorskip('submitit')


def _tiny_ae():
  config = small(load_config('ae'), epochs=1)
  config.model.update(hidden=(16,), latent_dim=4)
  config.data.max_train_examples = 256
  return config


# One structure, two seeds: one group, one job (a second job would only add another Python start-up).
SWEEP = sweep.axis('seed', [0, 1])


def test_launcher_runs_groups_as_local_jobs_and_skips_finished_runs(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'runs')
  two_structures = sweep.product(sweep.axis('model.latent_dim', [4, 2]), SWEEP)
  assert [len(job) for job in submit.plan_jobs(_tiny_ae(), two_structures, workdir)] == [2, 2]  # a job a group
  assert [len(job) for job in submit.plan_jobs(_tiny_ae(), two_structures, workdir, max_models_per_job=1)] == [1] * 4
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
  executor = submitit.LocalExecutor(folder=str(tmp_path / 'submitit'))
  executor.update_parameters(timeout_min=10)
  lines = []
  summaries = submit.submit_sweep(_tiny_ae(), SWEEP, workdir, executor, log=lines.append)
  assert 'submitting 1 jobs' in lines[0], lines
  assert sorted(summaries) == sorted(sweep.run_name(o) for o in SWEEP)
  assert all(s is not None and s['epochs'] == 1 for s in summaries.values()), lines
  assert any(name.endswith('.pkl') for name in os.listdir(tmp_path / 'submitit'))  # the job's pickles and logs
  index = json.load(open(os.path.join(workdir, 'sweep.json')))
  assert [r['name'] for r in index] == [sweep.run_name(o) for o in SWEEP]

  again = []
  assert submit.submit_sweep(_tiny_ae(), SWEEP, workdir, executor, log=again.append) == summaries
  assert again[0].startswith('2 of 2 runs already finished; submitting 0 jobs'), again

