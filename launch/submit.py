"""Submits a sweep's groups as jobs through submitit: SLURM on a cluster, local processes elsewhere.

  python -m launch.submit --config=configs/vae.py:idx=../shared/data/mnist \\
      --sweep=configs/sweeps/kl_weight.py --workdir=runs/kl --cluster=slurm \\
      --slurm_partition=gpu --gpus_per_node=1 --timeout_min=120
  python -m launch.submit --config=configs/vae.py --sweep=configs/sweeps/kl_weight.py:seeds=1 \\
      --workdir=/tmp/kl --cluster=local

Each group of the sweep (runs that share a structure, ``aelab/sweep.py``) becomes one job that runs
``sweep.run_sweep`` on its runs, vectorized on the job's devices; ``--max_models_per_job`` splits large
groups. Runs that finished (their ``summary.json``) are skipped before anything is submitted, so running
the command again resumes a sweep, and a job's interrupted runs resume from their checkpoints. The
summaries are collected into ``<workdir>/sweep.json``. See launch/README.md for multi-host launching.
"""
import json
import os
from collections.abc import Callable
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from aelab import config as config_lib
from aelab import data
from aelab.train import sweep

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. configs/vae.py:mnist.',
                                          lock_config=True)
_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file with get_sweep(arg), e.g. configs/sweeps/kl_weight.py.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Root of the runs\' folders; submitit logs go to <workdir>/submitit.')
_CLUSTER = flags.DEFINE_enum('cluster', None, ['slurm', 'local', 'debug'],
                             'submitit executor; default: SLURM where sbatch exists, else local processes.')
_MAX_MODELS = flags.DEFINE_integer('max_models_per_job', 0, 'Split groups into jobs of at most this many runs '
                                   '(0: one job per group).')
_TIMEOUT = flags.DEFINE_integer('timeout_min', 60, 'Time limit of each job in minutes.')
_PARTITION = flags.DEFINE_string('slurm_partition', None, 'SLURM partition.')
_GPUS = flags.DEFINE_integer('gpus_per_node', 0, 'GPUs per job (SLURM).')
_CPUS = flags.DEFINE_integer('cpus_per_task', 2, 'CPU cores per job.')
flags.mark_flags_as_required(['config', 'sweep', 'workdir'])

Overrides = sweep.Overrides


def plan_jobs(config: ml_collections.ConfigDict, overrides: list[Overrides], workdir: str,
              max_models_per_job: int = 0) -> list[list[Overrides]]:
  """The overrides of each job: the unfinished runs of every group, in chunks of at most
  ``max_models_per_job`` (0: whole groups). Raises SweepError / ConfigError for a bad sweep."""
  todo = [m for m in sweep.members(config, overrides) if sweep.read_summary(workdir, m) is None]
  jobs = []
  for group in sweep.group(todo):
    size = max_models_per_job or len(group)
    jobs += [[m.overrides for m in group[i:i + size]] for i in range(0, len(group), size)]
  return jobs


def collect(config: ml_collections.ConfigDict, overrides: list[Overrides], workdir: str) -> dict[str, dict | None]:
  """``{run name: summary or None (unfinished)}`` for every run, also written to ``<workdir>/sweep.json``."""
  runs = sweep.members(config, overrides)
  summaries = {m.name: sweep.read_summary(workdir, m) for m in runs}
  with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
    json.dump([{'name': m.name, 'overrides': m.overrides, 'summary': summaries[m.name]} for m in runs], f,
              indent=2, default=str)
  return summaries


def submit_sweep(config: ml_collections.ConfigDict, overrides: list[Overrides], workdir: str, executor: Any,
                 max_models_per_job: int = 0, log: Callable[[str], None] = print) -> dict[str, dict | None]:
  """Submits the unfinished runs of the sweep as jobs on ``executor`` (a submitit executor), waits for
  them and returns :func:`collect`. A failed job is reported (with its log folder) and its runs are None;
  the others still finish. Raises SweepError / ConfigError before submitting for a bad sweep."""
  jobs_overrides = plan_jobs(config, overrides, workdir, max_models_per_job)
  total = len(sweep.members(config, overrides))
  log(f'{total - sum(map(len, jobs_overrides))} of {total} runs already finished; '
      f'submitting {len(jobs_overrides)} jobs for the rest')
  jobs = [executor.submit(sweep.run_sweep, config, job, workdir) for job in jobs_overrides]
  for job, job_overrides in zip(jobs, jobs_overrides):
    try:
      job.result()
      log(f'job {job.job_id}: {len(job_overrides)} runs done')
    except Exception as e:  # noqa: BLE001  (a failed job must not hide the others' results)
      log(f'job {job.job_id} failed ({type(e).__name__}); its log: {job.paths.stderr}\n{str(e)[-1500:]}')
  return collect(config, overrides, workdir)


def make_executor(folder: str, cluster: str | None) -> Any:
  """A submitit executor writing its logs under ``folder``, with this command's resource flags."""
  import submitit
  executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
  executor.update_parameters(timeout_min=_TIMEOUT.value, cpus_per_task=_CPUS.value, name='aelab-sweep')
  if executor.cluster == 'slurm':
    executor.update_parameters(slurm_partition=_PARTITION.value, gpus_per_node=_GPUS.value or None)
  return executor


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:
    config, overrides = _CONFIG.value, sweep.load(_SWEEP.value)
    executor = make_executor(os.path.join(_WORKDIR.value, 'submitit'), _CLUSTER.value)
    summaries = submit_sweep(config, overrides, _WORKDIR.value, executor, _MAX_MODELS.value)
  except (config_lib.ConfigError, data.DataError, data.DatasetUnavailableError) as e:
    raise SystemExit(f'error: {e}') from None
  unfinished = [name for name, summary in summaries.items() if summary is None]
  print(f'{len(summaries) - len(unfinished)} of {len(summaries)} runs finished; index in '
        f'{_WORKDIR.value}/sweep.json' + (f'; unfinished: {unfinished}' if unfinished else ''), flush=True)
  if unfinished:
    raise SystemExit(1)


if __name__ == '__main__':
  app.run(main)
