"""The training engine: one loop for a single run, a sweep group and in-memory fitting.

A group is ``K`` models that share every structural config field (a single run is a group of one).
Their states are stacked on a leading model axis; one jitted program per group trains an epoch of every
model (a ``lax.scan`` over batches, ``vmap``ped over the model axis when ``K > 1``), evaluates the test
split and reconstructs the figure images, and only those metrics come back to the host. Checkpoints are
one asynchronous orbax save of the stacked state every ``train.checkpoint_every`` epochs, at the end,
and when SIGTERM or SIGINT arrives (then the run stops cleanly; rerunning resumes it to the same
numbers). Figures are drawn on a background thread.

Keys (DESIGN.md): ``init_key, train_key = split(key(seed))``; epoch ``e`` uses ``fold_in(train_key, e)``,
split into a permutation key and a step key; step ``s`` (global) uses ``fold_in(step_key, s)``, split
once into a binarization key and an objective key.
"""
import contextlib
import dataclasses
import hashlib
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab.train import checkpoints, figures, optimizers

from aelab import config as config_lib, data

from aelab.eval import evaluators, metrics, plots

from aelab.data import stream
from aelab.train.program import (  # noqa: F401  (re-exported: the engine's public names)
    Program, Run, abstract_state, check_compatible, make_run, make_train_epoch, make_train_step, over_models, row,
    stack)
from aelab.train.workdir import Workdir

State = optimizers.State
Log = Callable[[str], None]


class Interrupted(Exception):
  """Training stopped on SIGTERM / SIGINT after checkpointing the epoch it was in; rerun to resume."""

  def __init__(self, signum: int, epoch: int, where: str):
    self.signum, self.epoch = signum, epoch
    super().__init__(f'Stopped by {signal.Signals(signum).name} after epoch {epoch}, checkpointed in {where}; '
                     'rerun the same command to resume.')


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


@contextlib.contextmanager
def stop_on_signals() -> Iterator[list[int]]:
  """Yields a list that receives the number of a SIGTERM or SIGINT when one arrives (the loop then
  checkpoints and stops after its epoch); a second signal acts as usual. Only in the main thread."""
  received: list[int] = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

  def handler(signum, frame):
    received.append(signum)
    for s, h in previous.items():
      signal.signal(s, h)

  for s in previous:
    signal.signal(s, handler)
  try:
    yield received
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


@dataclasses.dataclass
class Timer:
  """Seconds spent per part of the run, for summary.json (``time_<part>_s``)."""
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)

  @contextlib.contextmanager
  def __call__(self, part: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0


def restore(out: Workdir, abstract: Any, cache: dict | None = None, log: Log = print,
            discard_corrupt: bool = False) -> tuple[Any, int]:
  """``(state, epoch)`` of the run in ``out`` from its newest checkpoint that reads back intact (host
  arrays without the model axis), or ``(None, 0)``. A checkpoint that does not read back (a truncated or
  deleted file) is reported in one line through ``log`` and the one before it is tried; with
  ``discard_corrupt`` (training, which saves that epoch again) it is deleted.
  ``cache`` (a dict kept across calls) restores a group's stacked checkpoint once for all of its runs.
  Raises ConfigError when the stored arrays do not fit ``abstract`` (the workdir holds a run of another
  model), naming the config fields that changed."""
  cache = {} if cache is None else cache
  for directory, index, epoch in checkpoints.candidates(out.path):
    if (directory, epoch) not in cache:
      try:
        cache[directory, epoch] = _restore_stacked(out, abstract, directory, epoch)
      except config_lib.ConfigError:
        raise
      except Exception as e:  # noqa: BLE001  (orbax and TensorStore raise many kinds for a damaged file)
        reason = ' '.join(str(e).split())[:200]
        log(f'The checkpoint of epoch {epoch} in {directory} does not read back ({type(e).__name__}: {reason}); '
            f'{"deleted it, " if discard_corrupt else ""}trying the one before.')
        if discard_corrupt:
          checkpoints.discard(directory, epoch)
        continue
    return row(cache[directory, epoch], index), epoch
  return None, 0


def _restore_stacked(out: Workdir, abstract: Any, directory: str, epoch: int) -> Any:
  """The stacked state of ``epoch`` in ``directory``, after checking its shapes against ``abstract``."""
  ckpt = checkpoints.GroupCheckpoints(directory)
  try:
    stored = ckpt.shapes(epoch)
    out.check_shapes([s[1:] for s in stored], [tuple(x.shape) for x in jax.tree.leaves(abstract)],
                     f'of epoch {epoch}')
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((stored[0][0], *x.shape), x.dtype), abstract)
    return ckpt.restore(epoch, stacked)
  finally:
    ckpt.close()


def _progress(label: str, epoch: int, num_epochs: int, records: list[dict], alive: np.ndarray,
              examples_per_s: float, seconds_per_epoch: float) -> str:
  """One line: a single run's main metrics, or for a group the range over models of the loss and the
  main test metric."""
  eta = time.strftime('%H:%M:%S', time.gmtime(seconds_per_epoch * (num_epochs - epoch)))
  if len(records) == 1:
    shown = ' '.join(f'{k}={v:.4g}' for k, v in records[0].items() if k in _PROGRESS_METRICS)
    return f'{label}epoch {epoch}/{num_epochs} {shown} | {examples_per_s:,.0f} examples/s | ETA {eta}'
  live = [r for r, a in zip(records, alive) if a]
  shown = []
  for key in ('train/loss', 'test/neg_elbo' if live and 'test/neg_elbo' in live[0] else 'test/recon'):
    values = [r[key] for r in live if key in r]
    if values:
      shown.append(f'{key} {min(values):.4g}..{max(values):.4g}')
  return (f'{label}epoch {epoch}/{num_epochs} | {len(live)}/{len(records)} models | {" | ".join(shown)} | '
          f'{examples_per_s:,.0f} model-examples/s | ETA {eta}')


_PROGRESS_METRICS = ('train/loss', 'test/recon', 'test/neg_elbo', 'test/kl', 'test/recon_mse',
                     'test/recon_mse_clean_input')


def _first_nonfinite(losses_S: np.ndarray) -> int | None:
  bad = np.flatnonzero(~np.isfinite(losses_S))
  return int(bad[0]) if bad.size else None


# A parameter or a mean code larger than this in magnitude counts as diverged. Trained autoencoders'
# weights and codes are O(1) to O(100); an exploding optimizer (configs/ae.py with learning rate 1e6:
# parameters of 5e6 and codes of mean magnitude 2.6e16 after one epoch) puts them far past it while a
# bounded loss (MSE of a sigmoid output) stays finite.
DIVERGED_MAGNITUDE = 1e6
CODE_METRICS = ('code_mean_abs', 'code_norm')


def divergence(out: dict, epoch: int) -> str | None:
  """Why one model's epoch ``out`` (a row of ``Program.epoch``'s output) counts as diverged, or None.

  Diverged: a step's training loss, a test metric or a parameter is not finite, or the magnitude of a
  parameter or of the test codes (``test/code_mean_abs``, ``test/code_norm``) exceeds ``DIVERGED_MAGNITUDE``
  (a loss on a bounded output, such as MSE after a sigmoid, may still look fine then)."""
  losses = np.asarray(out['train']['loss'])
  bad = _first_nonfinite(losses.reshape(-1))
  if bad is not None:
    return f'The training loss became {losses.reshape(-1)[bad]} at epoch {epoch}, step {bad + 1} of {losses.size}'
  for name, value in out['test'].items():
    if not np.isfinite(value):
      return f'The test metric test/{name} became {value} at epoch {epoch}'
  biggest = float(out['param_max_abs'])
  if not np.isfinite(biggest):
    return f'A parameter became {biggest} at epoch {epoch}'
  if biggest > DIVERGED_MAGNITUDE:
    return f'A parameter reached magnitude {biggest:.3g} (> {DIVERGED_MAGNITUDE:g}) at epoch {epoch}'
  for name in CODE_METRICS:
    if name in out['test'] and out['test'][name] > DIVERGED_MAGNITUDE:
      return f'The test codes reached test/{name}={out["test"][name]:.3g} (> {DIVERGED_MAGNITUDE:g}) at epoch {epoch}'
  return None


@dataclasses.dataclass
class Group:
  """A group to train: its runs, their output directories (None: in memory, see :func:`fit`), where the
  group's checkpoints go, and the states and epoch it starts from."""
  runs: list[Run]
  outs: list[Workdir] | None
  checkpoint_dir: str | None
  states: list[Any | None]
  start_epoch: int


class _Loop:
  """The epochs of one :class:`Group` (see the module docstring)."""

  def __init__(self, group: Group, dataset: data.Dataset, log: Log, label: str, timer: Timer,
               devices: Sequence[jax.Device] | None):
    self.group, self.dataset, self.log, self.label, self.timer = group, dataset, log, label, timer
    self.runs, self.k = group.runs, len(group.runs)
    self.cfg = self.runs[0].config.train
    self.program = Program(self.runs, dataset, devices)
    self.ckpt = (checkpoints.GroupCheckpoints(group.checkpoint_dir, self.cfg.keep_checkpoints)
                 if group.checkpoint_dir else None)
    self.painter = figures.Painter()
    self.stream_state: dict | None = None  # the grain iterator's state after a streamed epoch
    self.alive = np.ones(self.k, bool)
    self.records: list[dict] = [{} for _ in self.runs]
    self.history: list[list[dict]] = [[] for _ in self.runs]
    self.pinned: set[int] = set()
    self.rebuild = False  # set when models diverged mid-run: the others go on in a program without them
    self.good_epoch = [group.start_epoch] * self.k
    self.figures_on = bool(self.cfg.figures_every) and dataset.kind == 'image' and group.outs is not None
    self.by_epoch = [figures.load_reconstructions(o.figure_path, group.start_epoch) if self.figures_on else {}
                     for o in (group.outs or [None] * self.k)]

  def initial_state(self) -> Any:
    rates = jnp.asarray([r.config.optimizer.learning_rate for r in self.runs], jnp.float32)
    with self.timer('compile'):
      init = self.program.init.lower(jnp.stack([r.init_key for r in self.runs]), rates).compile()
    state = init(jnp.stack([r.init_key for r in self.runs]), rates)
    if any(s is not None for s in self.group.states):
      fresh = jax.device_get(state)
      rows = [s if s is not None else row(fresh, m) for m, s in enumerate(self.group.states)]
      state = stack(rows)
      state['opt_state'] = optimizers.set_learning_rates(state['opt_state'], rates)  # the config's, not the stored
    return self.program.shard(state)

  def run(self) -> list[dict | None]:
    """Trains the remaining epochs; returns each run's summary (None for a run whose loss diverged)."""
    try:
      state = self.epochs()
      return [None] * self.k if self.rebuild else self._finish(state)
    finally:
      self.painter.close()
      self.timer.seconds['figures'] = self.timer.seconds.get('figures', 0.0) + self.painter.seconds
      if self.ckpt is not None:
        with self.timer('checkpoints'):
          self.ckpt.close()
      for out in self.group.outs or []:
        out.close()

  def epochs(self) -> Any:
    """Trains the group's remaining epochs; returns the final stacked state (on the devices)."""
    p, cfg, ds = self.program, self.cfg, self.dataset
    state = self.initial_state()
    hp = p.shard(stack([r.hp for r in self.runs]))
    train_keys = p.shard(jnp.stack([r.train_key for r in self.runs]))
    streamed = isinstance(ds.train, stream.Stream)
    x_train, x_test = p.replicate((None if streamed else ds.train, ds.test))  # as stored: uint8 images
    self.x_test = x_test
    x_fig = p.replicate(ds.test[:cfg.num_figure_images]) if self.figures_on else None
    first = self.group.start_epoch + 1
    if x_fig is not None and self.group.start_epoch:
      self._redraw_lost_figure(state, x_fig, hp)
    if first > cfg.num_epochs:
      return state
    if streamed:
      epoch_fn = self._streamed_epoch()
    else:
      with self.timer('compile'):
        epoch_fn = p.epoch.lower(state, x_train, x_test, x_fig, first, train_keys, hp).compile()
    if self.group.outs is not None:
      for out in self.group.outs:
        out.write_config()
    started = time.perf_counter()
    with stop_on_signals() as received:
      for epoch in range(first, cfg.num_epochs + 1):
        t0 = time.perf_counter()
        with self.timer('epochs'):
          state, out = epoch_fn(state, x_train, x_test, x_fig, epoch, train_keys, hp)
          out = jax.device_get(out)
        seconds = time.perf_counter() - t0
        alive_before = int(self.alive.sum())
        for m in np.flatnonzero(self.alive):
          self._record(m, epoch, jax.tree.map(lambda x, m=m: x[m], out), seconds)
        rebuild = (self.ckpt is not None and 0 < self.alive.sum() < alive_before and epoch < cfg.num_epochs
                   and not received)
        if received or rebuild or epoch == cfg.num_epochs or epoch % cfg.checkpoint_every == 0:
          self._checkpoint(epoch, state)
        examples = int(self.alive.sum()) * p.steps_per_epoch * cfg.batch_size / seconds
        self.log(_progress(self.label, epoch, cfg.num_epochs, self.records, self.alive, examples,
                           (time.perf_counter() - started) / (epoch - first + 1)))
        if received:
          if self.ckpt is not None:
            self.ckpt.wait()
          raise Interrupted(received[0], epoch, self.ckpt.directory if self.ckpt else 'memory')
        if not self.alive.any():
          break
        if rebuild:  # the diverged models stop using compute: the others continue in a new program
          self.rebuild = True
          break
    return state

  def _redraw_lost_figure(self, state: Any, x_fig: jax.Array, hp: Any) -> None:
    """Draws again the reconstruction figure of the epoch this run resumes from when it is missing (a
    kill between that epoch's checkpoint and its figure, drawn in the background, lost it)."""
    epoch = self.group.start_epoch
    if epoch % self.cfg.figures_every:
      return
    lost = [m for m in range(self.k) if epoch not in self.by_epoch[m]]
    if not lost:
      return
    reconstruct = jax.jit(self.program.family.reconstruct)  # takes the stored x_fig
    params, hp = jax.device_get((state['params'], hp))
    for m in lost:
      x_tilde, x_hat = jax.device_get(reconstruct(row(params, m), x_fig, jax.random.key(metrics.EVAL_SEED), row(hp, m)))
      self._draw(m, epoch, x_tilde, x_hat)

  def _streamed_epoch(self) -> Callable:
    """``epoch_fn`` of streamed data (aelab/stream.py): the epoch's batches come from the grain
    iterator in chunks of ``data.stream_chunk``, one compiled call per chunk (dispatched while the next
    chunk is read), then the test metrics. All models of the group see the same batch order, seeded by
    the stream seed (:meth:`_stream_seed`) and the epoch. The chunk and test programs compile in the
    first epoch (jitted, not ahead of time: a data-parallel state changes its sharding after one call)."""
    p, data_cfg, train = self.program, self.runs[0].config.data, self.dataset.train
    seed = self._stream_seed()

    def epoch_fn(state, x_train, x_test, x_fig, epoch, train_keys, hp):
      batches = stream.epoch_batches(train, self.cfg.batch_size, seed, epoch, chunk=data_cfg.stream_chunk,
                                     workers=data_cfg.stream_workers, prefetch=2 * data_cfg.stream_chunk)
      metrics_KxC = []
      for x_CxBxD in batches:
        state, step_metrics = p.chunk(state, p.replicate(x_CxBxD), epoch, train_keys, hp)
        metrics_KxC.append(step_metrics)
      self.stream_state = {'seed': seed, 'epoch': epoch, 'iterator': batches.get_state()}
      out = p.test(state, x_test, x_fig, hp)
      return state, {'train': jax.tree.map(lambda *m: jnp.concatenate(m, axis=1), *metrics_KxC), **out}

    return epoch_fn

  def _stream_seed(self) -> int:
    """The seed of the streamed batch order: the one stored with a resumed run's checkpoint (so the
    run continues in its own order, even resumed alone after a sweep), else the first run's ``seed``."""
    if self.group.start_epoch and self.group.outs:
      stored = checkpoints.data_iterator(self.group.outs[0].path, self.group.start_epoch)
      if stored is not None:
        return int(stored['seed'])
    return int(self.runs[0].config.seed)

  def _record(self, m: int, epoch: int, out: dict, seconds: float) -> None:
    """One model's epoch: a finite check, then metrics, TensorBoard and the figure."""
    run, cfg = self.runs[m], self.cfg
    reason = divergence(out, epoch)
    if reason is not None:
      self.alive[m] = False
      self.pinned.add(self.good_epoch[m])
      kept = (f'the last good checkpoint (epoch {self.good_epoch[m]}) is kept' if self.good_epoch[m]
              else 'no checkpoint yet')
      message = (f'{reason}; stopped without saving this epoch ({kept}). Lower optimizer.learning_rate, check '
                 'the data, or pick another likelihood, in a new --workdir (a workdir is one run).')
      if self.k == 1:
        if self.ckpt is not None:
          self.ckpt.wait()
        raise FloatingPointError(message)
      self.log(f'{self.group.outs[m].path if self.group.outs else run.name}: {message}')
      return
    record = {**{f'train/{k}': float(np.mean(v)) for k, v in out['train'].items()},
              **{f'test/{k}': float(v) for k, v in out['test'].items()},
              'epoch_time_s': seconds, 'examples_per_s': self.program.steps_per_epoch * cfg.batch_size / seconds}
    self.records[m] = record
    self.history[m].append({'epoch': epoch, **record})
    if self.group.outs is None:
      return
    target = self.group.outs[m]
    step = epoch * self.program.steps_per_epoch
    target.write_metrics(step, epoch, record, tensorboard=False)
    self.painter.submit(target.write_tensorboard, step, record)  # off the training path (a slow import)
    if self.figures_on and epoch % cfg.figures_every == 0:
      self._draw(m, epoch, out['x_tilde'], out['x_hat'])

  def _draw(self, m: int, epoch: int, x_tilde: np.ndarray, x_hat: np.ndarray) -> None:
    """Submits model ``m``'s reconstruction figure of ``epoch`` to the painter."""
    inputs = self.dataset.to_float32(self.dataset.test[:self.cfg.num_figure_images])
    rows = {'input': inputs, 'corrupted': x_tilde, 'reconstruction': x_hat}
    if self.runs[m].config.corruption.name == 'none':
      del rows['corrupted']
    self.painter.submit(figures.reconstructions, self.group.outs[m].figure_path, epoch, rows, self.dataset.shape,
                        self.by_epoch[m])

  def _last_record(self, m: int, history: list[dict]) -> dict:
    """Model ``m``'s metrics of its last epoch: this process's record or metrics.jsonl's; ``{}`` (logged) when
    that record was lost, so that the evaluators compute the test metrics again (and no ``train/*`` remain)."""
    record = self.records[m] or (history[-1] if history else {})
    if not record:
      self.log(f'{self.group.outs[m].path}: no metrics of the last epoch; summary.json gets its test metrics '
               'computed again and no train/* metrics.')
    return record

  def _checkpoint(self, epoch: int, state: Any) -> None:
    if self.ckpt is None:
      return
    with self.timer('checkpoints'):
      self.ckpt.save(epoch, state, self.pinned, data_iterator=self.stream_state)
      for m in np.flatnonzero(self.alive):
        self.good_epoch[m] = epoch
        checkpoints.write_pointer(self.group.outs[m].path, self.ckpt.directory, int(m), epoch)

  def _finish(self, state: Any) -> list[dict | None]:
    """End-of-training metrics (``evaluators.final_metrics``), figures and summary.json of every run still
    alive."""
    cfg, runs, outs = self.cfg, self.runs, self.group.outs
    draw = outs is not None and bool(cfg.figures_every)
    histories = [o.read_metrics() for o in outs] if outs is not None else [[] for _ in runs]
    for m in np.flatnonzero(self.alive) if draw else ():  # drawn while the final arrays are computed
      if histories[m]:
        self.painter.submit(plots.learning_curves, histories[m], outs[m].figure_path('learning_curves.png'))
    arrays = None
    if (runs[0].config.eval.final_metrics or self.figures_on) and self.alive.any():
      with self.timer('compile'):
        final_fn = self.program.final.lower(state['params'], self.x_test).compile()
      with self.timer('final_eval'):
        arrays = jax.device_get(final_fn(state['params'], self.x_test))
    shared: dict = {}  # the evaluators' compiled functions, for every model of the group
    summaries: list[dict | None] = []
    for m, run in enumerate(runs):
      if not self.alive[m]:
        summaries.append(None)
        continue
      record = self._last_record(m, histories[m])
      known = {'test': {k: v for k, v in record.items() if k.startswith('test/')}} if record else {}
      if arrays is not None:
        known.update(codes=arrays['codes'][m], active_units=arrays['active_units'][m])
      params = jax.tree.map(lambda x, m=m: x[m], state['params'])
      with self.timer('final_eval'):
        final = evaluators.final_metrics(self.program.family, run.config, params, run.hp, self.dataset, self.x_test,
                                         shared=shared, known=known)
      num_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state['params']))
      summaries.append({**{k: v for k, v in record.items() if '/' in k}, **final, 'epochs': cfg.num_epochs,
                        'num_params': num_params})
      if self.figures_on and arrays is not None:
        self.painter.submit(figures.final, outs[m].figure_path, jax.tree.map(lambda x, m=m: x[m], arrays),
                            self.dataset, run.config, self.by_epoch[m])
    with self.timer('figures_wait'):
      self.painter.wait()
    return summaries


def _checkpoint_dir(groups_dir: str | None, outs: list[Workdir]) -> str:
  """A group of one keeps its checkpoints in its own directory; a larger group under ``groups_dir``, in
  a folder named by a hash of its runs' directories."""
  if len(outs) == 1 or groups_dir is None:
    return os.path.join(outs[0].path, 'checkpoints')
  digest = hashlib.sha1('\n'.join(o.path for o in outs).encode()).hexdigest()[:12]
  return os.path.join(groups_dir, digest, 'checkpoints')


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
               log: Log = print, label: str = '', devices: Sequence[jax.Device] | None = None) -> list[dict | None]:
  """Trains ``runs`` (one structure) on ``dataset`` into their directories ``outs``, each resumed from
  its newest intact checkpoint; runs stopped at different epochs train as separate groups, and a group
  in which some models diverge goes on without them (a new program of the others, so the diverged stop
  using compute). Returns each run's summary (also its summary.json), None for a run that diverged
  (``K > 1``; see :func:`divergence`).

  Raises FloatingPointError for a single run that diverges (its last good checkpoint is kept),
  Interrupted on SIGTERM / SIGINT (after checkpointing), ConfigError for a workdir of another model.
  """
  timer = Timer()
  enable_compilation_cache(runs[0].config)
  summaries = _train_groups(runs, dataset, outs, groups_dir, log, label, devices, timer)
  times = {f'time_{k}_s': round(v, 3) for k, v in sorted(timer.seconds.items())}
  wall = time.time() - process_start_time()
  for out, summary in zip(outs, summaries):
    if summary is not None:
      summary.update(times, wall_time_s=wall)
      out.write_summary(summary)
  return summaries


def _train_groups(runs: list[Run], dataset: data.Dataset, outs: list[Workdir], groups_dir: str | None, log: Log,
                  label: str, devices: Sequence[jax.Device] | None, timer: Timer) -> list[dict | None]:
  """:func:`train_runs` without writing the summaries."""
  abstract = abstract_state(runs[0], dataset)
  stacks: dict = {}
  restored = [restore(out, abstract, stacks, log, discard_corrupt=True) for out in outs]
  del stacks
  for out, (_, epoch) in zip(outs, restored):
    note = out.truncate_metrics(epoch)  # records past the checkpoint are trained again
    if note:
      log(note)
  by_epoch: dict[int, list[int]] = {}
  for i, (_, epoch) in enumerate(restored):
    by_epoch.setdefault(epoch, []).append(i)
  summaries: list[dict | None] = [None] * len(runs)
  for epoch, idx in sorted(by_epoch.items()):
    if epoch:
      log(f'{label}resuming {len(idx)} runs from the checkpoints of epoch {epoch}' if label else
          f'Resuming from the checkpoint of epoch {epoch} in {outs[idx[0]].path}')
    group = Group([runs[i] for i in idx], [outs[i] for i in idx], _checkpoint_dir(groups_dir, [outs[i] for i in idx]),
                  [restored[i][0] for i in idx], epoch)
    loop = _Loop(group, dataset, log, label, timer, devices)
    if len(runs) > 1:
      devices_used = 1 if loop.program.mesh is None else loop.program.mesh.devices.size
      log(f'{label}{len(idx)} models in one program on {devices_used} device(s)')
    done = loop.run()
    if loop.rebuild:
      live = [i for i, alive in zip(idx, loop.alive) if alive]
      log(f'{label}{len(idx) - len(live)} diverged model(s) left out: the other {len(live)} go on in a new program')
      done = [None] * len(idx)
      for i, summary in zip(live, _train_groups([runs[i] for i in live], dataset, [outs[i] for i in live],
                                                groups_dir, log, label, devices, timer)):
        summaries[i] = summary
    for i, summary in zip(idx, done):
      summaries[i] = summary if summary is not None else summaries[i]
  return summaries


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, log: Log = print) -> dict[str, Any]:
  """Trains ``config`` and writes the workdir's outputs (DESIGN.md); resumes from its checkpoint.

  Returns the summary (also written to summary.json): the last epoch's ``train/*`` and ``test/*``
  metrics, end-of-training metrics (``eval.final_metrics``), ``num_params``, ``wall_time_s`` (since the
  process started) and ``time_<part>_s`` (compile, epochs, checkpoints, final_eval, figures, ...).
  A finished run's summary is returned as it is. The workdir is one run: a config that changes its
  result is refused before anything is written (``Workdir.check_same_run``; a higher
  ``train.num_epochs`` continues it), and a second process is kept out (``Workdir.locked``). Raises
  ConfigError or data.DataError for bad input (before training), workdir.WorkdirBusy (a ConfigError)
  while another process trains in ``workdir``, FloatingPointError when the model diverges
  (:func:`divergence`; the last good checkpoint is kept), Interrupted on SIGTERM / SIGINT (the epoch is
  checkpointed; rerun to resume).
  """
  config_lib.validate(config)
  dataset = stream.load(config.data)
  check_compatible(config, dataset)
  out = Workdir(workdir, config)
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
  loop = _Loop(Group([run], None, None, [None], 0), dataset, log, '  ', Timer(), None)
  try:
    state = loop.epochs()
  finally:
    loop.painter.close()
  return run, row(jax.device_get(state['params']), 0), loop.history[0]
