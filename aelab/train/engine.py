"""Training entry points: :func:`train_and_evaluate` (one run into its workdir), :func:`train_runs` (the
runs of one structure, e.g. a sweep's group, into their directories) and :func:`fit` (in memory, no
workdir). Each builds the groups to train and hands them to the epoch loop (``aelab/train/loop.py``); a
group in which models diverge yields a smaller group of the others, trained next.
"""
import functools
import os
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections

from aelab import config as config_lib, data
from aelab.data import stream
from aelab.train import checkpoints, figures, groups, loop, writers  # noqa: F401  (figures: re-exported)
from aelab.train.hooks import DIVERGED_MAGNITUDE, Timer, divergence  # noqa: F401  (re-exported)
from aelab.train.groups import Group, restore  # noqa: F401  (re-exported)
from aelab.train.loop import Interrupted, stop_on_signals  # noqa: F401  (re-exported)
from aelab.train.program import (  # noqa: F401  (re-exported: the engine's public names)
    Program, Run, abstract_state, check_compatible, make_run, make_train_epoch, make_train_step, over_models, row,
    stack)
from aelab.train.workdir import Workdir

Log = Callable[[str], None]


def process_start_time() -> float:
  """The Unix time this process started (from /proc; the time aelab was imported elsewhere)."""
  try:
    with open('/proc/self/stat') as f:
      start_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return time.time() - uptime + start_ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError):
    return _IMPORTED


_IMPORTED = time.time()


def enable_compilation_cache(config: ml_collections.ConfigDict) -> None:
  """Turns on JAX's persistent compilation cache in ``train.compilation_cache_dir`` (default
  ``config.default_cache_dir()``) for every compilation, unless ``train.compilation_cache`` is False: a
  second run of the same config then starts training without compiling."""
  from jax.experimental.compilation_cache import compilation_cache  # noqa: PLC0415
  directory = None
  if config.train.compilation_cache:
    directory = config.train.compilation_cache_dir or config_lib.default_cache_dir()
  if jax.config.jax_compilation_cache_dir != directory:
    compilation_cache.reset_cache()  # the cache keeps the directory it first used otherwise
    jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def train_runs(runs: list[Run], dataset: data.Dataset, outs: list[Workdir], groups_dir: str | None = None,
               log: Log = print, label: str = '', devices: Sequence[jax.Device] | None = None,
               shared: Any = None) -> list[dict | None]:
  """Trains ``runs`` (one structure) on ``dataset`` into their directories ``outs``, each resumed from
  its newest intact checkpoint; runs stopped at different epochs train as separate groups, and a group
  in which some models diverge goes on without them (a new program of the others, so the diverged stop
  using compute). Returns each run's summary (also its summary.json), None for a run that diverged
  (``K > 1``; see :func:`divergence`).

  ``shared``: a slot of ``stream.SharedBatches`` (a sweep's groups reading one stream together): the first
  group reads its chunks there and leaves it when done; other groups (resumed apart, or the survivors of a
  divergence) read the stream on their own.

  Raises FloatingPointError for a single run that diverges (its last good checkpoint is kept),
  Interrupted on SIGTERM / SIGINT (after checkpointing), ConfigError for a workdir of another model.
  """
  timer = Timer()
  enable_compilation_cache(runs[0].config)
  summaries = _train_groups(runs, dataset, outs, groups_dir, log, label, devices, timer, shared)
  times = {f'time_{k}_s': round(v, 3) for k, v in sorted(timer.seconds.items())}
  wall = time.time() - process_start_time()
  for out, summary in zip(outs, summaries):
    if summary is not None:
      summary.update(times, wall_time_s=wall)
      out.write_summary(summary)
  return summaries


def _train_groups(runs: list[Run], dataset: data.Dataset, outs: list[Workdir], groups_dir: str | None, log: Log,
                  label: str, devices: Sequence[jax.Device] | None, timer: Timer, shared: Any = None
                  ) -> list[dict | None]:
  """:func:`train_runs` without writing the summaries: the groups of ``runs`` (by the epoch each resumes
  from) train one after the other, and a group that lost diverged models yields the smaller group of the
  others (``groups.survivors``), trained next."""
  abstract = abstract_state(runs[0], dataset)
  pending = groups.make_groups(runs, outs, list(range(len(runs))), abstract, groups_dir, log, label)
  summaries: list[dict | None] = [None] * len(runs)
  survivors = functools.partial(groups.survivors, abstract=abstract, groups_dir=groups_dir, log=log, label=label)
  pending[0].shared = shared
  while pending:
    group = pending.pop(0)
    try:
      done, smaller = loop.train_group(group, dataset, log, label, timer, devices, survivors)
    finally:
      if group.shared is not None:
        group.shared.leave()
    for i, summary in zip(group.ids, done):
      summaries[i] = summary
    pending += smaller
  return summaries


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, log: Log = print) -> dict[str, Any]:
  """Trains ``config`` and writes the workdir's outputs (DESIGN.md); resumes from its checkpoint.

  Returns the summary (also written to summary.json): the last epoch's ``train/*`` and ``test/*``
  metrics, end-of-training metrics (``eval.final_metrics``), ``num_params``, ``wall_time_s`` (since the
  process started) and ``time_<part>_s`` (compile, epochs, checkpoints, final_eval, figures, ...).
  A finished run's summary is returned as it is. The workdir is one run: a config that changes its
  result, or other data than the run's (its fingerprint, stored in config.json with ``data.path``
  made absolute), is refused before anything is written (``Workdir.check_same_run``; a higher
  ``train.num_epochs`` continues it), and a second process is kept out (``Workdir.locked``). Raises
  ConfigError or data.DataError for bad input (before training), workdir.WorkdirBusy (a ConfigError)
  while another process trains in ``workdir``, FloatingPointError when the model diverges
  (:func:`divergence`; the last good checkpoint is kept), Interrupted on SIGTERM / SIGINT (the epoch is
  checkpointed; rerun to resume).
  """
  config_lib.validate(config)
  writers.validate(config.log)
  config = config.copy_and_resolve_references()
  data.resolve_paths(config.data)  # config.json names the data whatever the current directory
  enable_compilation_cache(config)  # before the data: its seeded split compiles a permutation
  dataset = stream.load(config.data)
  check_compatible(config, dataset)
  out = Workdir(workdir, config, data.fingerprint(config.data))
  with out.locked():
    out.check_same_run(log)
    summary = out.read_summary(log)
    found = checkpoints.latest(out.path)
    if summary and summary.get('epochs') == config.train.num_epochs and found and found[2] == config.train.num_epochs:
      return summary
    return train_runs([make_run(config, dataset.shape)], dataset, [out], log=log)[0]


def fit(config: ml_collections.ConfigDict, dataset: data.Dataset, log: Log = lambda line: None
        ) -> tuple[Run, Any, list[dict[str, Any]]]:
  """Trains ``config``'s model on in-memory ``dataset`` for ``config.train.num_epochs``; no workdir.

  Returns ``(run, params, history)``; ``history`` holds one record per epoch with ``train/*`` (means over
  the epoch's steps) and ``test/*`` metrics. Raises ConfigError for an invalid config or a batch larger
  than the data, FloatingPointError when the loss stops being finite.
  """
  config_lib.validate(config)
  check_compatible(config, dataset)
  config = config.copy_and_resolve_references()
  config.train.figures_every = 0
  config.eval.final_metrics = False
  enable_compilation_cache(config)
  run = make_run(config, dataset.shape)
  group, timer = Group([run], None, None, [None], 0, [0]), Timer()
  program = Program(group.runs, dataset)
  periodic = loop.make_periodic(group, program, dataset, log, '  ', timer, pool=None)
  try:
    trained = loop.run_epochs(group, dataset, program, periodic, timer)
  finally:
    periodic.close(timer)
  return run, row(jax.device_get(trained.state['params']), 0), periodic.writers[0].records
