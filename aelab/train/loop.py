"""The epoch loop of one group of models (a single run is a group of one), read top to bottom in
:func:`train_group`: build the group's program, restore or initialise, then per epoch one compiled call,
the metric writers, and the hooks whose time has come (``aelab/train/hooks.py``); at the end, the final
metrics and summaries. Models that diverge mid-run leave the group: :func:`train_group` returns the smaller
group of the others (``groups.survivors``), which the caller trains next.

A group's states are stacked on a leading model axis; one jitted program per group trains an epoch of every
model (``aelab/train/program.py``), and only the metrics come back to the host. Streamed and in-memory
epochs are one object each (:class:`StreamedEpoch`, :class:`MemoryEpoch`) behind one call signature.

Keys (DESIGN.md): ``init_key, train_key = split(key(seed))``; epoch ``e`` uses ``fold_in(train_key, e)``,
split into a permutation key and a step key; step ``s`` (global) uses ``fold_in(step_key, s)``, split
once into a binarization key and an objective key.
"""
import collections
import concurrent.futures
import contextlib
import dataclasses
import signal
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aelab import data, interrupts
from aelab.data import stream
from aelab.train import checkpoints, final, history, hooks, optimizers, writers
from aelab.train.groups import Group
from aelab.train.program import Ahead, Program, Run, row, stack
from aelab.train.workdir import flatten

Log = Callable[[str], None]


class Interrupted(Exception):
  """Training stopped on SIGTERM / SIGINT after checkpointing the epoch it was in; rerun to resume."""

  def __init__(self, signum: int, epoch: int, where: str):
    self.signum, self.epoch = signum, epoch
    super().__init__(f'Stopped by {signal.Signals(signum).name} after epoch {epoch}, checkpointed in {where}; '
                     'rerun the same command to resume.')


def stop_on_signals() -> contextlib.AbstractContextManager[list[int]]:
  """Yields a list that receives the number of a SIGTERM or SIGINT when one arrives (the loop then
  checkpoints and stops after its epoch); a second signal raises ``interrupts.Stopped`` at once
  (``aelab/interrupts.py``). Only in the main thread."""
  return interrupts.deferred('training')


# ---- one epoch: in memory or streamed, one call signature ----


@dataclasses.dataclass
class Inputs:
  """The arrays every epoch of a group takes, on the devices: the stacked ``hp`` and ``train_keys``, the
  training split (None when streamed), the test split and the figure images (None without figures)."""
  hp: Any
  train_keys: jax.Array
  x_train: jax.Array | None
  x_test: jax.Array
  x_fig: jax.Array | None


def make_inputs(program: Program, runs: list[Run], dataset: data.Dataset, figures_on: bool) -> Inputs:
  """The group's :class:`Inputs` (data as stored, e.g. uint8 images, made float32 on the device; for a
  conditional family ``data.Labeled`` pairs of the examples and their labels)."""
  streamed, num_classes = isinstance(dataset.train, stream.Stream), program.family.num_classes
  x_test = data.inputs(dataset, 'test', num_classes)  # with labels for a conditional family only
  x_fig = program.replicate(data.take(x_test, slice(0, runs[0].config.train.num_figure_images))) if figures_on else None
  x_train, x_test = program.replicate((None if streamed else data.inputs(dataset, 'train', num_classes), x_test))
  return Inputs(program.shard(stack([r.hp for r in runs])), program.shard(jnp.stack([r.train_key for r in runs])),
                x_train, x_test, x_fig)


class MemoryEpoch:
  """An epoch of in-memory data: one call of ``Program.epoch``, compiled ahead of time (timed as
  ``compile``, started with the others by :class:`Ahead`). ``epoch(state, epoch) -> (state, outputs)``."""
  iterator_state = None

  def __init__(self, inputs: Inputs, state: Any, first: int, timer: hooks.Timer, ahead: Ahead):
    self.inputs = inputs
    with timer('compile'), interrupts.phase('compiling'):
      self.fn = ahead.get('epoch', state, *self._args(first))

  def _args(self, epoch: int) -> tuple:
    i = self.inputs
    return i.x_train, i.x_test, i.x_fig, epoch, i.train_keys, i.hp

  def __call__(self, state: Any, epoch: int) -> tuple[Any, dict]:
    return self.fn(state, *self._args(epoch))


class StreamedEpoch:
  """An epoch of streamed data (aelab/data/stream.py): batches from the grain iterator in chunks of
  ``data.stream_chunk``, one compiled call per chunk (dispatched while the next chunk is read), then the
  test metrics. Every model of the group sees the same batch order, seeded by ``seed`` and the epoch;
  ``iterator_state`` is the iterator's state after the last epoch (saved with the checkpoint). With
  ``shared`` (the group's slot of ``stream.SharedBatches``) the chunks are those other groups read too. At
  most ``IN_FLIGHT_CHUNKS`` chunks wait on the device at a time (the host reads the next meanwhile). The chunk
  and test programs compile in the first epoch (jitted, not ahead of time: a data-parallel state changes
  its sharding after one call)."""

  def __init__(self, program: Program, inputs: Inputs, dataset: data.Dataset, config: Any, seed: int,
               shared: Any = None):
    self.program, self.inputs, self.train, self.seed = program, inputs, dataset.train, seed
    self.batch_size, self.data_config, self.shared = config.train.batch_size, config.data, shared
    self.iterator_state: dict | None = None

  def __call__(self, state: Any, epoch: int) -> tuple[Any, dict]:
    p, i, chunk = self.program, self.inputs, self.data_config.stream_chunk
    make = lambda: stream.epoch_batches(self.train, self.batch_size, self.seed, epoch, chunk=chunk,  # noqa: E731
                                        workers=self.data_config.stream_workers, prefetch=2 * chunk)
    batches = make() if self.shared is None else self.shared.batches(epoch, make)  # read once for all groups
    metrics_KxC, in_flight = [], collections.deque()
    for x_CxBxD in batches:
      if self.shared is None:
        state, step_metrics = p.chunk(state, p.replicate(x_CxBxD), epoch, i.train_keys, i.hp)
      else:
        with self.shared.computing():  # one group's chunk at a time: their working memories do not add up
          state, step_metrics = jax.block_until_ready(p.chunk(state, p.replicate(x_CxBxD), epoch, i.train_keys,
                                                              i.hp))
      metrics_KxC.append(step_metrics)
      in_flight.append(step_metrics)
      if len(in_flight) > IN_FLIGHT_CHUNKS:  # bounds the chunks dispatched and not yet trained on (memory)
        jax.block_until_ready(in_flight.popleft())
    self.iterator_state = {'seed': self.seed, 'epoch': epoch, 'iterator': batches.get_state()}
    out = p.test(state, i.x_test, i.x_fig, i.hp)
    return state, {'train': jax.tree.map(lambda *m: jnp.concatenate(m, axis=1), *metrics_KxC), **out}


IN_FLIGHT_CHUNKS = 2  # chunks dispatched ahead of the device: JAX's dispatch would otherwise queue the epoch


def stream_seed(group: Group) -> int:
  """The seed of the streamed batch order: the one stored with a resumed run's checkpoint (so the run
  continues in its own order, even resumed alone after a sweep), else the first run's ``seed``."""
  if group.start_epoch and group.outs:
    stored = checkpoints.data_iterator(group.outs[0].path, group.start_epoch)
    if stored is not None:
      return int(stored['seed'])
  return int(group.runs[0].config.seed)


def init_args(group: Group) -> tuple[jax.Array, jax.Array]:
  """``Program.init``'s arguments for ``group``: the runs' init keys and learning rates."""
  return (jnp.stack([r.init_key for r in group.runs]),
          jax.device_put(np.asarray([r.config.optimizer.learning_rate for r in group.runs], np.float32)))


def wants_final(group: Group, periodic: 'Periodic') -> bool:
  """Whether the end of training runs the final program: for the final metrics or the figures."""
  return bool(group.outs is not None and (group.runs[0].config.eval.final_metrics or
                                          (periodic.figures is not None and periodic.figures.images)))


def compile_ahead(program: Program, group: Group, inputs: Inputs, final_wanted: bool, timer: hooks.Timer) -> Ahead:
  """Starts compiling the group's init, epoch (in-memory data, epochs left) and final programs together."""
  first = group.start_epoch + 1
  epoch_args = (None if inputs.x_train is None or first > group.runs[0].config.train.num_epochs else
                (inputs.x_train, inputs.x_test, inputs.x_fig, first, inputs.train_keys, inputs.hp))
  with timer('compile'), interrupts.phase('compiling'):
    return Ahead(program, init_args(group), epoch_args, inputs.x_test if final_wanted else None)


def initial_state(group: Group, timer: hooks.Timer, ahead: Ahead) -> Any:
  """The group's stacked state on the devices: fresh (``Program.init``) with each restored run's row in
  place, its learning rate the config's (not the stored one)."""
  init_keys, rates = ahead.init_args
  with timer('compile'), interrupts.phase('compiling'):
    init = ahead.get('init', init_keys, rates)
  state = init(init_keys, rates)
  if any(s is not None for s in group.states):
    fresh = jax.device_get(state)
    state = stack([s if s is not None else row(fresh, m) for m, s in enumerate(group.states)])
    state['opt_state'] = optimizers.set_learning_rates(state['opt_state'], rates)
  return ahead.program.shard(state)


def record(out: dict, seconds: float, examples_per_epoch: int) -> dict[str, float]:
  """One model's metrics of an epoch: ``train/*`` (means over the steps), ``test/*``, its time and speed."""
  return {**{f'train/{k}': float(np.mean(v)) for k, v in out['train'].items()},
          **{f'test/{k}': float(v) for k, v in out['test'].items()},
          'epoch_time_s': seconds, 'examples_per_s': examples_per_epoch / seconds}


# ---- the loop ----


@dataclasses.dataclass
class Periodic:
  """What runs around the epochs of a group: one metric writer per model, the divergence guard, and the
  hooks (checkpoint, figures, progress; those that apply)."""
  writers: list[writers.MetricWriter]
  guard: hooks.DivergenceGuard
  hooks: list[hooks.Hook]
  checkpoint: hooks.Checkpoint | None = None
  figures: hooks.Figures | None = None

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self, timer: hooks.Timer) -> None:
    """Closes the writers, then the hooks (each waits for its background work), all of them even when
    one raises; raises the first error."""
    with contextlib.ExitStack() as closing:
      for hook in self.hooks:
        closing.callback(hook.close)
      closing.callback(self._close_writers, timer)

  def _close_writers(self, timer: hooks.Timer) -> None:
    with timer('writers'):
      for w in self.writers:
        w.close()


def make_periodic(group: Group, program: Program, dataset: data.Dataset, log: Log, label: str,
                  timer: hooks.Timer, pool: concurrent.futures.Executor) -> Periodic:
  """The writers (``log.writers`` of each run's directory, asynchronous on ``pool``; in memory without a
  workdir) and the hooks of ``group``."""
  runs, outs, train = group.runs, group.outs, group.runs[0].config.train
  if outs is None:
    metric_writers = [writers.MemoryWriter() for _ in runs]
  else:
    metric_writers = [writers.AsyncWriter(writers.create(r.config.log.writers, o.path, r.name), pool)
                      for r, o in zip(runs, outs)]
  names = [o.path for o in outs] if outs else [r.name for r in runs]
  pinned: set[int] = set()  # the last good epochs of diverged models, kept by the checkpoint retention
  ckpt = None
  if group.checkpoint_dir is not None:
    ckpt = hooks.Checkpoint(checkpoints.GroupCheckpoints(group.checkpoint_dir, train.keep_checkpoints),
                            [o.path for o in outs], train.checkpoint_every, train.num_epochs, group.start_epoch,
                            pinned, lambda: [w.flush() for w in metric_writers], timer)
  guard = hooks.DivergenceGuard(names, pinned, lambda: ckpt.epoch if ckpt else group.start_epoch,
                                ckpt.wait if ckpt else lambda: None, log)
  figs = (hooks.Figures(dataset, [r.config for r in runs], [o.figure_path for o in outs], group.start_epoch, timer,
                        lambda m, step, images: metric_writers[m].write_images(step, images))
          if outs is not None and train.figures_every else None)
  progress = hooks.Progress(log, label, train.num_epochs, program.steps_per_epoch * train.batch_size,
                            group.start_epoch)
  return Periodic(metric_writers, guard, [h for h in (ckpt, figs, progress) if h is not None], ckpt, figs)


@dataclasses.dataclass
class Trained:
  """A group after its epochs: the stacked state (on the devices), which models are alive, each one's
  last record of metrics, the inputs, the programs compiled ahead (the final one), and whether the loop
  stopped early so that the live models go on without the diverged ones (``groups.survivors``)."""
  state: Any
  alive: np.ndarray
  records: list[dict]
  inputs: Inputs
  ahead: Ahead
  regroup: bool = False


def run_epochs(group: Group, dataset: data.Dataset, program: Program, periodic: Periodic,
               timer: hooks.Timer) -> Trained:
  """Trains ``group``'s remaining epochs: per epoch one compiled call, the divergence guard, the metric
  writers, then the hooks. Raises Interrupted on SIGTERM / SIGINT (after checkpointing), FloatingPointError
  when a single run diverges."""
  train, k = group.runs[0].config.train, len(group.runs)
  inputs = make_inputs(program, group.runs, dataset, periodic.figures is not None and periodic.figures.images)
  ahead = compile_ahead(program, group, inputs, wants_final(group, periodic), timer)
  if periodic.figures is not None:
    periodic.figures.painter.prepare()  # matplotlib's import while this thread waits for the compilation
  state = initial_state(group, timer, ahead)
  if periodic.figures is not None:
    periodic.figures.redraw_lost(group.start_epoch, lambda m: hooks.eval_reconstruct(
        program.family, state['params'], inputs.x_fig, inputs.hp, m))
  alive, records = np.ones(k, bool), [{} for _ in range(k)]
  first = group.start_epoch + 1
  if first > train.num_epochs:
    return Trained(state, alive, records, inputs, ahead)
  epoch_fn = (StreamedEpoch(program, inputs, dataset, group.runs[0].config, stream_seed(group), group.shared)
              if inputs.x_train is None else MemoryEpoch(inputs, state, first, timer, ahead))
  start_outputs(group, periodic.writers)
  examples = program.steps_per_epoch * train.batch_size
  with stop_on_signals() as received:
    for epoch in range(first, train.num_epochs + 1):
      t0 = time.perf_counter()
      with timer('epochs'):
        state, out = epoch_fn(state, epoch)
        out = jax.device_get(out)
      outputs = [row(out, m) for m in range(k)]
      seconds = time.perf_counter() - t0
      diverged = periodic.guard(epoch, outputs, alive)
      step = epoch * program.steps_per_epoch
      for m in np.flatnonzero(alive):
        records[m] = record(outputs[m], seconds, examples)
        periodic.writers[m].write_scalars(step, {'epoch': epoch, **records[m]})
      regroup = bool(diverged) and alive.any() and epoch < train.num_epochs and periodic.checkpoint is not None
      end = hooks.EpochEnd(epoch, step, state, outputs, records, alive, seconds, bool(received) or regroup,
                           epoch_fn.iterator_state)
      for hook in periodic.hooks:
        hook(end)
      if received and end.stop:  # a signal during the hooks stops after the next epoch, which saves first
        raise Interrupted(received[0], epoch, periodic.checkpoint.ckpt.directory if periodic.checkpoint else 'memory')
      if regroup or not alive.any():
        return Trained(state, alive, records, inputs, ahead, regroup)
  return Trained(state, alive, records, inputs, ahead)


def start_outputs(group: Group, metric_writers: list[writers.MetricWriter]) -> None:
  """Before the first epoch: each run's config.json, and its flattened config as the writers' hparams."""
  for out, w in zip(group.outs or [], metric_writers):
    out.write_config()
    w.write_hparams(flatten(out.config))


def train_group(group: Group, dataset: data.Dataset, log: Log, label: str, timer: hooks.Timer,
                devices: Sequence[jax.Device] | None, survivors: Callable[[Group, np.ndarray], list[Group]]
                ) -> tuple[list[dict | None], list[Group]]:
  """Trains ``group`` (build its program, restore or initialise, the epochs, the summaries). Returns each
  run's summary (None for a run that diverged) and the groups to train next: when models diverged before
  the last epoch, ``survivors(group, alive)`` (``groups.survivors``: the others, restored from the
  checkpoint the loop wrote as it stopped), whose runs get no summary here."""
  program = Program(group.runs, dataset, devices)
  if label:
    log(f'{label}{len(group.runs)} models in one program on '
        f'{1 if program.mesh is None else program.mesh.devices.size} device(s)')
  with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='writers') as pool:
    periodic = make_periodic(group, program, dataset, log, label, timer, pool)
    failed = True
    try:
      trained = run_epochs(group, dataset, program, periodic, timer)
      with interrupts.phase('the end-of-training metrics'):
        summaries = ([None] * len(group.runs) if trained.regroup or group.outs is None else
                     finish(group, dataset, program, periodic, trained, log, timer))
      failed = False
    finally:
      _close(periodic, timer, failed)
  return summaries, survivors(group, trained.alive) if trained.regroup else []


def _close(periodic: Periodic, timer: hooks.Timer, failed: bool) -> None:
  """Closes ``periodic``; while another error propagates (``failed``), an error of closing is dropped."""
  try:
    periodic.close(timer)
  except Exception:  # noqa: BLE001
    if not failed:
      raise


# ---- the end of training ----


def finish(group: Group, dataset: data.Dataset, program: Program, periodic: Periodic, trained: Trained, log: Log,
           timer: hooks.Timer) -> list[dict | None]:
  """Final metrics, figures and the summary of every run still alive (None for the diverged)."""
  config, state, alive, x_test = group.runs[0].config, trained.state, trained.alive, trained.inputs.x_test
  periodic.flush()
  histories = [history.read(o.path) for o in group.outs]
  for m in np.flatnonzero(alive) if periodic.figures else ():  # drawn while the final arrays are computed
    periodic.figures.draw_curves(m, histories[m])
  arrays = (final.final_arrays(trained.ahead, state, x_test, timer) if wants_final(group, periodic) and alive.any()
            else None)
  num_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state['params']))
  summaries: list[dict | None] = [None] * len(group.runs)
  shared: dict = {}  # the evaluators' compiled functions, for every model of the group
  params = jax.device_get(state['params'])  # rows taken on the host: no per-array program to compile
  for m in np.flatnonzero(alive):
    last = final.last_record(trained.records[m], histories[m], group.outs[m].path, log)
    found = final.final_metrics(program, group.runs[m], dataset, row(params, m), x_test, last,
                                None if arrays is None else row(arrays, m), shared, timer)
    summaries[m] = {**{k: v for k, v in last.items() if '/' in k}, **found, 'epochs': config.train.num_epochs,
                    'num_params': num_params}
    if periodic.figures is not None and arrays is not None:
      periodic.figures.draw_final(m, row(arrays, m))
  if periodic.figures is not None:
    periodic.figures.wait()
  return summaries
