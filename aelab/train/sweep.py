"""Sweeps: many runs of one config, declared as data and trained together where they can be.

A sweep is a list of override dicts beside a config, e.g. ``{'vae.kl_weight': 4.0, 'seed': 1}``; build
it with :func:`axis`, :func:`product`, :func:`zipped` and ``+``, in ``configs/sweeps/<name>.py`` which
defines ``get_sweep(arg=None)``. Runs whose configs differ only in numeric hyperparameters (the fields
that reach the objective through ``hp``, found by :func:`vectorized_fields`; ``seed``; and
``optimizer.learning_rate``) form one group; runs that differ in anything else (widths, latent size,
penalty name, data) form separate groups. A group is one compiled program: the states stacked on a
leading model axis (sharded over the local devices), the scanned epoch ``vmap``ped over it, each model
with its own keys and ``hp``, the data shared (``aelab/engine.py``, the engine of single runs too).

Each run writes the outputs of a single run to ``<workdir>/<run name>/``, and its numbers match a single
run of its config with the same seed to float tolerance.
"""
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import os
import re
import signal
from typing import Any, Callable, Sequence

import jax
import ml_collections

from aelab import config as config_lib, data, interrupts
from aelab.train import engine, parallel, writers
from aelab import models
from aelab.data import stream
from aelab.train.files import write_json
from aelab.train.workdir import Workdir, flatten, result_changes

Overrides = dict[str, Any]


class SweepError(config_lib.ConfigError):
  """A sweep file or override is malformed; the message says what to change."""


def axis(field: str, values: Sequence[Any]) -> list[Overrides]:
  """``[{field: v} for v in values]``: one axis of a sweep, e.g. ``axis('seed', range(3))``."""
  return [{field: v} for v in values]


def product(*sweeps: list[Overrides]) -> list[Overrides]:
  """Every combination of one override dict from each sweep, merged (later sweeps win on a shared
  field), in row-major order: ``product(axis('a', [1, 2]), axis('b', [3, 4]))`` has 4 runs."""
  return [{k: v for part in parts for k, v in part.items()} for parts in itertools.product(*sweeps)]


def zipped(*sweeps: list[Overrides]) -> list[Overrides]:
  """Element ``i`` of every sweep, merged: ``zipped(axis('a', [1, 2]), axis('b', [3, 4]))`` has 2 runs.
  Raises SweepError when the sweeps' lengths differ."""
  lengths = [len(s) for s in sweeps]
  if len(set(lengths)) > 1:
    raise SweepError(f'zipped() needs sweeps of one length, got lengths {lengths}.')
  return [{k: v for part in parts for k, v in part.items()} for parts in zip(*sweeps)]


def check(sweep: Any, where: str = 'the sweep') -> list[Overrides]:
  """Returns ``sweep`` if it is a non-empty list of dicts with string keys; raises SweepError otherwise."""
  if not isinstance(sweep, (list, tuple)):
    raise SweepError(f'{where} must be a list of override dicts, got {type(sweep).__name__}.')
  if not sweep:
    raise SweepError(f'{where} is empty: it needs at least one override dict ({{}} runs the config as is).')
  for i, overrides in enumerate(sweep):
    if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
      raise SweepError(f'{where}: entry {i} must be a dict of "field.name": value, got {overrides!r}.')
  return list(sweep)


def load(spec: str) -> list[Overrides]:
  """The sweep of ``path/to/sweep.py[:arg]``: that file's ``get_sweep(arg)`` (``None`` without ``:arg``).
  Raises SweepError when the file is missing, defines no ``get_sweep``, or returns no list of dicts, and
  ConfigError when the file fails to run or ``get_sweep`` raises."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise SweepError(f'Sweep file {path!r} not found (e.g. --sweep=configs/sweeps/kl_weight.py).')
  module = config_lib.load_module(path, 'sweep')
  if not callable(getattr(module, 'get_sweep', None)):
    raise SweepError(f'Sweep file {path} defines no get_sweep(arg=None) returning a list of override dicts.')
  return check(config_lib.call(module, 'get_sweep', arg or None, path, 'sweep'), f'get_sweep() of {path}')


def apply(config: ml_collections.ConfigDict, overrides: Overrides) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``overrides`` (dotted field names) set. Raises SweepError naming an
  unknown field (and the fields it could have meant) or a value of the wrong type."""
  config = config.copy_and_resolve_references()
  for field, value in overrides.items():
    parent, name = _parent_of(config, field)
    value = tuple(value) if isinstance(parent[name], tuple) and isinstance(value, list) else value
    try:
      parent[name] = value
    except (TypeError, ValueError) as e:
      raise SweepError(f'Sweep override {field}={value!r}: {e}') from None
  return config


def _parent_of(config: ml_collections.ConfigDict, field: str) -> tuple[ml_collections.ConfigDict, str]:
  """The ConfigDict holding dotted ``field``, and the field's last name. Raises SweepError if unknown."""
  parts = field.split('.')
  node = config
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      known = ', '.join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else 'none'
      raise SweepError(f'Sweep override {field!r}: the config has no field {".".join(parts[:depth + 1])!r} '
                       f'(fields there: {known}).')
    if depth < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def run_name(overrides: Overrides) -> str:
  """The run's folder name: ``vae.kl_weight=4,seed=1`` (``base`` for no overrides)."""
  name = ','.join(f'{k}={_format(v)}' for k, v in overrides.items()) or 'base'
  return re.sub(r'[^A-Za-z0-9_.,=+-]', '_', name)


def _format(value: Any) -> str:
  """A value in a run name: floats short (``0.001``, ``4``) unless that loses digits (``0.0010000001``)."""
  if isinstance(value, (list, tuple)):
    return '-'.join(map(str, value)) or 'none'
  if isinstance(value, float):
    short = f'{value:g}'
    return short if float(short) == value else repr(value)
  return str(value)


@dataclasses.dataclass
class Member:
  """One run of a sweep: its folder name, its overrides and the resolved config."""
  name: str
  overrides: Overrides
  config: ml_collections.ConfigDict


def members(config: ml_collections.ConfigDict, sweep: list[Overrides]) -> list[Member]:
  """The validated runs of ``sweep`` over ``config``. Raises SweepError (empty sweep, unknown field,
  two runs with the same name) or ConfigError (an invalid value), before anything trains."""
  result, seen = [], {}
  for overrides in check(sweep):
    run_config = apply(config, overrides)
    config_lib.validate(run_config)
    writers.validate(run_config.log)
    data.resolve_paths(run_config.data)
    resolved = run_config.to_json_best_effort(sort_keys=True)
    if resolved in seen:  # the same config, whatever the order or spelling of its overrides
      raise SweepError(f'The sweep lists the same run more than once: {seen[resolved]!r} and {dict(overrides)!r} give '
                       'the same config; remove one.')
    seen[resolved] = dict(overrides)
    result.append(Member(run_name(overrides), dict(overrides), run_config))
  names = [m.name for m in result]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise SweepError(f'Runs of different configs share the folder name {repeated}: give their overrides values that '
                     'differ in the name.')
  return result


def vectorized_fields(config: ml_collections.ConfigDict) -> set[str]:
  """Fields whose values may differ within one compiled group: ``seed``, ``optimizer.learning_rate``
  (held in the optimizer state, see ``aelab/optimizers.py``) and the config fields of the family's
  traced hyperparameters (its ``HYPERPARAMS``, e.g. ``vae.kl_weight``: DESIGN.md)."""
  return {'seed', 'optimizer.learning_rate', *models.hyperparam_fields(config.model.name).values()}


def structure_key(config: ml_collections.ConfigDict) -> str:
  """The config without its vectorized fields, as JSON: runs with equal keys train as one group."""
  skip = vectorized_fields(config)
  return json.dumps({k: v for k, v in flatten(config.to_dict()).items() if k not in skip},
                    sort_keys=True, default=str)


def group(runs: list[Member]) -> list[list[Member]]:
  """``runs`` split by :func:`structure_key`, in order of first appearance."""
  groups: dict[str, list[Member]] = {}
  for member in runs:
    groups.setdefault(structure_key(member.config), []).append(member)
  return list(groups.values())


def run_dir(workdir: str, member: Member) -> str:
  return os.path.join(workdir, member.name)


def read_summary(workdir: str, member: Member, log: Callable[[str], None] = lambda line: None
                 ) -> dict[str, Any] | None:
  """The run's summary.json if it finished all of its epochs with ``member``'s config (its config.json
  differs in no field that changes the result, see ``workdir.result_changes``), else None. A torn
  summary.json is reported through ``log`` (naming the file) and read as None."""
  path = run_dir(workdir, member)
  if not os.path.exists(os.path.join(path, 'summary.json')):
    return None
  out = Workdir(path, member.config)
  summary = out.read_summary(log)
  if summary is None or summary.get('epochs') != member.config.train.num_epochs:
    return None
  previous = out.previous_config()
  return None if previous and result_changes(previous, out.config) else summary


def run_sweep(config: ml_collections.ConfigDict, sweep: list[Overrides], workdir: str,
              devices: Sequence[jax.Device] | None = None, log: Callable[[str], None] = print) -> dict[str, dict]:
  """Trains every run of ``sweep`` over ``config`` into ``workdir/<run name>/``, one compiled program per
  group (``aelab/engine.py``, group checkpoints under ``workdir/groups/``); finished runs are skipped and
  interrupted ones resume from their checkpoints. With several processes (``jax.distributed``), process
  ``i`` of ``P`` takes runs ``i, i + P, ...`` of the whole sweep on its local devices, independently of the
  others (any number of runs, epochs and groups), and at the end waits for the others
  (``parallel.wait_for_other_processes``; not when interrupted).

  Returns ``{run name: summary}`` (this process's runs) and writes ``workdir/sweep.json``. Raises
  SweepError / ConfigError / DataError before training (every group's data is read and checked, and
  sweep.json written, before the first group trains), engine.Interrupted on SIGTERM / SIGINT (after
  checkpointing), and FloatingPointError after the other runs finished when some runs diverged, naming
  for each the check that fired (a non-finite training loss or test metric, a parameter's or the codes'
  magnitude; their last good checkpoints are kept).
  """
  runs = _runs_of_this_process(members(config, sweep))
  groups = group(runs)
  log(f'Sweep of {len(runs)} runs in {len(groups)} groups: ' + ', '.join(str(len(g)) for g in groups))
  datasets = load_data(groups)  # every group's data read and checked before the first group trains
  _write_index(workdir, runs, {m.name: s for m in runs if (s := read_summary(workdir, m)) is not None})
  summaries, diverged, reasons = {}, [], {}
  logged = _noting_divergence(workdir, runs, reasons, log)
  with _peers(workdir) as peers:
    try:
      shared = shared_stream(groups, workdir, log)
      for done, bad in (_train_together(groups, workdir, devices, logged, shared, datasets) if shared else
                        (train_group(g, workdir, devices, f'group {i + 1}/{len(groups)} ', logged,
                                     datasets[data_key(g[0].config)]) for i, g in enumerate(groups))):
        summaries.update(done)
        diverged += bad
      _write_index(workdir, runs, summaries)
    except (engine.Interrupted, KeyboardInterrupt):
      raise
    except Exception:
      parallel.wait_for_other_processes(log)  # process 0 hosts the coordinator: it must outlive the others
      raise
    parallel.wait_for_other_processes(log)
    if peers is not None:
      peers.finish('done')
      peers.wait(log)
  if diverged:
    why = '; '.join(f'{name}: {reasons.get(name, "diverged")}' for name in diverged)
    raise FloatingPointError(f'{len(diverged)} runs diverged and stopped ({why}); the other runs finished in '
                             f'{workdir}.')
  return summaries


def _noting_divergence(workdir: str, runs: list[Member], reasons: dict[str, str],
                       log: Callable[[str], None]) -> Callable[[str], None]:
  """``log`` that also keeps, in ``reasons``, why each run diverged: the check that fired, from the
  divergence guard's line ``<run dir>: <reason>; stopped ...`` (``hooks.DivergenceGuard``)."""
  prefixes = {os.path.abspath(run_dir(workdir, m)) + ': ': m.name for m in runs}

  def logged(line: str) -> None:
    for prefix, name in prefixes.items():
      if line.startswith(prefix) and '; stopped without saving' in line:
        reasons[name] = line[len(prefix):].split('; stopped without saving')[0]
    log(line)
  return logged


def data_key(config: ml_collections.ConfigDict) -> str:
  """The data config as JSON: groups with equal keys read the same data."""
  return config.data.to_json_best_effort(sort_keys=True)


def load_data(groups: list[list[Member]]) -> dict[str, Any]:
  """``{data_key: dataset}`` of every group (each distinct data config read once; streamed training data
  is read as it trains), checked against every run's config. Raises DataError / ConfigError naming the
  run, before anything trains."""
  datasets: dict[str, Any] = {}
  for members_of_group in groups:
    key = data_key(members_of_group[0].config)
    if key not in datasets:
      engine.enable_compilation_cache(members_of_group[0].config)  # the seeded split compiles a permutation
      datasets[key] = stream.load(members_of_group[0].config.data)
    for member in members_of_group:
      engine.check_compatible(member.config, datasets[key])
  return datasets


def shared_stream(groups: list[list[Member]], workdir: str, log: Callable[[str], None]
                  ) -> stream.SharedBatches | None:
  """A :class:`aelab.data.stream.SharedBatches` for the groups of a sweep that read one stream (several
  groups, streamed data, the same data fields, batch size, epochs and seed of their first run, none of their
  runs started): they then train together, each chunk read from disk once for all of them. Else None."""
  firsts = [g[0].config for g in groups]
  if len(groups) < 2 or not stream.should_stream(firsts[0].data):
    return None
  same = lambda f: len({json.dumps(f(c), sort_keys=True, default=str) for c in firsts}) == 1  # noqa: E731
  fresh = all(not os.path.exists(os.path.join(run_dir(workdir, m), 'config.json')) for g in groups for m in g)
  if not (same(lambda c: c.data.to_dict()) and same(lambda c: (c.train.batch_size, c.train.num_epochs, c.seed))
          and fresh):
    log('The groups read the stream one after another (their data, batch size, epochs or first seed differ, or '
        'some runs started before).')
    return None
  log(f'The {len(groups)} groups train together on one stream: each chunk is read once for all of them.')
  return stream.SharedBatches(len(groups))


def _train_together(groups: list[list[Member]], workdir: str, devices: Sequence[jax.Device] | None,
                    log: Callable[[str], None], shared: stream.SharedBatches, datasets: dict[str, Any]
                    ) -> list[tuple[dict[str, dict], list[str]]]:
  """Every group in its own thread, all reading the chunks of ``shared``; the results in the groups' order.
  Raises the first group's error after every group stopped.

  Signals (``aelab/interrupts.py``): the main thread waits inside ``interrupts.deferred`` for as long as the
  groups train, so that a first SIGTERM / SIGINT is only recorded, whatever each group is doing (compiling,
  in an epoch, writing a checkpoint): each group's epoch loop checkpoints the epoch it is in and stops
  (a group not yet in its loop trains its first epoch and checkpoints it), like a single run, and
  Interrupted is raised once all have stopped. A second signal raises ``interrupts.Stopped`` at once,
  without waiting for the groups' threads (``aelab.main`` then ends the process; the checkpoints written
  are kept)."""

  def one(i: int, group: list[Member]):
    slot = shared.slot()
    try:
      return train_group(group, workdir, devices, f'group {i + 1}/{len(groups)} ', log,
                         datasets[data_key(group[0].config)], shared=slot)
    finally:
      slot.leave()

  pool = concurrent.futures.ThreadPoolExecutor(len(groups), thread_name_prefix='group')
  try:
    with interrupts.deferred('training'):
      futures = [pool.submit(one, i, g) for i, g in enumerate(groups)]
      # A signal the kernel delivers to a group's thread runs its Python handler in the main thread only when
      # that thread runs bytecode: waiting in short slices records it while the groups train (one wait until
      # they finished recorded it after the last epoch, and the sweep ended as if never signalled).
      while concurrent.futures.wait(futures, timeout=0.05).not_done:
        pass
  except BaseException:  # a second signal: the groups' threads are left to the process's end
    pool.shutdown(wait=False, cancel_futures=True)
    raise
  pool.shutdown()
  return [f.result() for f in futures]


def train_group(group: list[Member], workdir: str, devices: Sequence[jax.Device] | None, label: str,
                log: Callable[[str], None], dataset: Any = None, shared: Any = None
                ) -> tuple[dict[str, dict], list[str]]:
  """Trains the runs of one group that have not finished; returns ``({name: summary}, diverged names)``.
  Every run's folder is locked and its config.json compared with the run's whole config and data first
  (``Workdir.locked``, ``Workdir.check_same_run``: ConfigError naming the changed fields or data).
  ``dataset`` (default: loaded here) is checked against every run's config (ConfigError / DataError).
  ``shared``: this group's slot of a :class:`aelab.data.stream.SharedBatches` (:func:`shared_stream`)."""
  dataset = dataset if dataset is not None else load_data([group])[data_key(group[0].config)]
  fingerprint = data.fingerprint(group[0].config.data)
  with contextlib.ExitStack() as held:
    outs = {m.name: Workdir(run_dir(workdir, m), m.config, fingerprint) for m in group}
    for out in outs.values():
      held.enter_context(out.locked())
      out.check_same_run(log)
    return _train_unfinished(group, outs, workdir, devices, label, log, dataset, shared)


def _train_unfinished(group: list[Member], outs: dict[str, Workdir], workdir: str,
                      devices: Sequence[jax.Device] | None, label: str, log: Callable[[str], None], dataset: Any,
                      shared: Any = None) -> tuple[dict[str, dict], list[str]]:
  summaries = {m.name: s for m in group if (s := read_summary(workdir, m, log)) is not None}
  todo = [m for m in group if m.name not in summaries]
  if summaries:
    log(f'{label}{len(summaries)} of {len(group)} runs already finished, skipped')
  if not todo:
    return summaries, []
  runs = [engine.make_run(m.config, dataset.shape, m.name) for m in todo]
  done = engine.train_runs(runs, dataset, [outs[m.name] for m in todo], os.path.join(workdir, 'groups'), log,
                           label, devices, shared)
  summaries.update({m.name: s for m, s in zip(todo, done) if s is not None})
  return summaries, [m.name for m, s in zip(todo, done) if s is None]


@contextlib.contextmanager
def _peers(workdir: str):
  """With independent processes (``parallel.initialize_distributed``), this process's :class:`parallel.Peers`
  record, marked stopped (with the reason) when the sweep ends in an exception or a signal; else None."""
  if parallel.process_count() == 1 or jax.process_count() > 1:
    yield None
    return
  peers = parallel.Peers(workdir)
  try:
    yield peers
  except BaseException as e:
    if not peers.ended:
      peers.finish('stopped', _reason(e))
    raise


def _reason(error: BaseException) -> str:
  """Why a process stopped, in a few words (a signal's name, or the error's type)."""
  signum = getattr(error, 'signum', None)
  return f'by {signal.Signals(signum).name}' if signum else f'by {type(error).__name__}'


def _runs_of_this_process(runs: list[Member]) -> list[Member]:
  """Runs ``i, i + P, ...`` of the whole sweep for process ``i`` of ``P`` (every process computes the same
  split, finished runs included, so a rerun gives each process the runs it had). Processes never wait for
  each other (checkpoints are per process, ``aelab/checkpoints.py``): any ``P``, any split, runs of
  different lengths or structures."""
  return runs[parallel.process_index()::parallel.process_count()]


def _write_index(workdir: str, runs: list[Member], summaries: dict[str, dict]) -> None:
  index = [{'name': m.name, 'overrides': m.overrides, 'summary': summaries.get(m.name)} for m in runs]
  suffix = f'.{parallel.process_index()}' if parallel.process_count() > 1 else ''
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, f'sweep{suffix}.json'), index)
