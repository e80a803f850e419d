"""Training one sweep group as one compiled program (see ``aelab/sweep.py`` for grouping).

The runs of a group share every structural field, so one ``train.Run`` builds the pure
``train_step(state, x_BxD, key, hp)``; its scanned epoch (``train.make_train_epoch``) is ``jax.vmap``ped
over a leading model axis of ``state``, ``epoch_key`` and ``hp`` with the data shared, so each model draws
its own permutation and step keys -- exactly those of a single run with its seed -- and gathers its
batches from the shared data inside the vmapped scan. The model axis is sharded over the devices
(``parallel.model_mesh``). Each run's own ``Run`` gives its initial state, keys and ``hp``; nothing here
knows a family's ``hp`` keys or optimizers.
"""
import copy
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aelab import data, evaluate, parallel, train
from aelab.sweep import Member, read_summary, run_dir
from aelab.workdir import Workdir


def swept_learning_rate(run: train.Run) -> None:
  """Makes ``run``'s learning rate part of its optimizer state, so runs that differ in it share one step.

  The optimizer is ``config.optimizer`` at learning rate 1 followed by ``optax.scale`` by the run's rate
  (held by ``optax.inject_hyperparams``): the same update, since optax multiplies by ``-lr * schedule``
  last (bit for bit with a constant schedule; to rounding with a decaying one). Only for families
  trained with ``config.optimizer`` (no ``make_train_step`` of their own). A sweep checkpoint differs from
  a single run's by the scale's state.
  """
  config = run.config
  unit = config.optimizer.copy_and_resolve_references()
  unit.learning_rate = 1.0
  scale = optax.inject_hyperparams(optax.scale)(step_size=config.optimizer.learning_rate)
  tx = optax.chain(train.make_optimizer(unit, run.steps_per_epoch * config.train.num_epochs), scale)
  run.init_opt_state = tx.init
  run.train_step = train.make_train_step(run.family.make_objective(run.model, config), tx)


def sweep_runs(group: list[Member], dataset: data.Dataset | None = None) -> list[train.Run]:
  """The ``train.Run`` of each member of one group, as a sweep trains them: the data loaded once (unless
  given) and checked against every config, the learning rate in the optimizer state (always, so that a
  run's checkpoints have one structure whichever runs it is grouped with). Raises ConfigError/DataError."""
  dataset = dataset or data.load(group[0].config.data)
  for member in group:
    train.check_compatible(member.config, dataset)
  runs = [train.Run(m.config, dataset) for m in group]
  if not hasattr(runs[0].family, 'make_train_step'):
    for run in runs:
      swept_learning_rate(run)
  return runs


def final_params(group: list[Member], workdir: str) -> list[Any]:
  """Each member's parameters from its latest checkpoint in ``workdir/<name>/`` (e.g. for a report).
  Raises FileNotFoundError for a run without a checkpoint."""
  runs = sweep_runs(group)
  initial = _initial_states(runs)
  params = []
  for i, member in enumerate(group):
    out = Workdir(run_dir(workdir, member), member.config, member.config.train.keep_checkpoints)
    try:
      state, epoch = out.restore(_model(initial, i))
    finally:
      out.close()
    if state is None:
      raise FileNotFoundError(f'No checkpoint in {out.path}: train the sweep first.')
    params.append(state['params'])
  return params


def _model(tree: Any, m: int) -> Any:
  """Model ``m``'s slice of a host tree with a leading model axis (arrays, also for scalars: orbax)."""
  return jax.tree.map(lambda x: np.asarray(x[m]), tree)


def _stack(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _vectorized(run: train.Run, mesh: jax.sharding.Mesh) -> tuple[Callable, Callable]:
  """Jitted ``(train_epochs(states, x_NxD, epoch_keys, hps), evaluate(params, x_MxD, hps))`` over a leading
  model axis, outputs sharded along it on ``mesh``."""
  cfg = run.config
  epoch = train.make_train_epoch(run.train_step, cfg.train.batch_size, cfg.data.binarize == 'dynamic')
  out = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(parallel.MODEL_AXIS))
  return (jax.jit(jax.vmap(epoch, in_axes=(0, None, 0, 0)), out_shardings=out),
          jax.jit(jax.vmap(run.evaluate, in_axes=(0, None, 0)), out_shardings=out))


def train_group(group: list[Member], workdir: str, devices: Sequence[jax.Device] | None, label: str,
                log: Callable[[str], None]) -> tuple[dict[str, dict], list[str]]:
  """Trains the runs of one group that have not finished; returns ``({name: summary}, diverged names)``.

  Runs are restored from their workdirs; those stopped at different epochs train as separate programs.
  """
  summaries = {m.name: s for m in group if (s := read_summary(workdir, m)) is not None}
  todo = [m for m in group if m.name not in summaries]
  if summaries:
    log(f'{label}: {len(summaries)} of {len(group)} runs already finished, skipped')
  if not todo:
    return summaries, []
  runs = sweep_runs(todo)
  outs = [Workdir(run_dir(workdir, m), m.config, m.config.train.keep_checkpoints) for m in todo]
  try:
    return _train_restored(todo, runs, outs, devices, label, log, summaries)
  finally:
    for out in outs:
      out.close()


def _initial_states(runs: list[train.Run]) -> train.State:
  """Every run's ``init_state()`` in one vmapped call (numpy, leading model axis): the first run's
  ``init_state`` with each run's ``init_key``, and each run's learning rate where it is swept."""
  rep = runs[0]

  def init_state(init_key):
    run = copy.copy(rep)
    run.init_key = init_key
    return run.init_state()

  states = jax.jit(jax.vmap(init_state))(jnp.stack([r.init_key for r in runs]))
  if optax.tree_utils.tree_get(states['opt_state'], 'step_size') is not None:  # swept_learning_rate
    rates = jnp.asarray([r.config.optimizer.learning_rate for r in runs], jnp.float32)
    states['opt_state'] = optax.tree_utils.tree_set(states['opt_state'], step_size=rates)
  return jax.device_get(states)


def _train_restored(todo, runs, outs, devices, label, log, summaries):
  initial = _initial_states(runs)
  states, by_epoch = [], {}
  for i, out in enumerate(outs):
    own = _model(initial, i)
    state, epoch = out.restore(own)
    states.append(state or own)
    by_epoch.setdefault(epoch, []).append(i)
  diverged = []
  for epoch, idx in sorted(by_epoch.items()):
    if epoch:
      log(f'{label}: resuming {len(idx)} runs from the checkpoints of epoch {epoch}')
    done, bad = _train_vectorized([runs[i] for i in idx], [outs[i] for i in idx], [states[i] for i in idx],
                                  epoch, devices, label, log)
    summaries.update({todo[i].name: s for i, s in zip(idx, done) if s is not None})
    diverged += [todo[idx[j]].name for j in bad]
  return summaries, diverged


def _train_vectorized(runs: list[train.Run], outs: list[Workdir], states: list[train.State], last_epoch: int,
                      devices, label: str, log) -> tuple[list[dict | None], list[int]]:
  """The epochs after ``last_epoch`` of every run, vmapped; per-run outputs as in ``train._train``.
  Returns (summary or None per run, indices of runs whose loss stopped being finite)."""
  rep, cfg, num = runs[0], runs[0].config.train, len(runs)
  mesh = parallel.model_mesh(num, devices)
  train_epochs, evaluate = _vectorized(rep, mesh)
  state = parallel.shard_models(_stack(states), mesh)
  hp = parallel.shard_models(_stack([r.hp for r in runs]), mesh)
  train_keys = parallel.shard_models(jnp.stack([r.train_key for r in runs]), mesh)
  x_train, x_test = parallel.replicate((jnp.asarray(rep.dataset.x_train), jnp.asarray(rep.dataset.x_test)), mesh)
  fold_in = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
  alive, records, started, host_state = np.ones(num, bool), [{} for _ in runs], time.time(), None
  log(f'{label}: {num} models in one program on {mesh.devices.size} device(s)')
  for epoch in range(last_epoch + 1, cfg.num_epochs + 1):
    t0 = time.time()
    state, step_metrics = train_epochs(state, x_train, fold_in(train_keys, epoch), hp)
    test = evaluate(state['params'], x_test, hp)
    host_state, step_metrics, test = jax.device_get((state, step_metrics, test))
    seconds = time.time() - t0
    for m in np.flatnonzero(alive):
      alive[m] = _finish_epoch(runs[m], outs[m], epoch, _model(host_state, m),
                               {k: v[m] for k, v in step_metrics.items()}, {k: v[m] for k, v in test.items()},
                               seconds, records[m], log)
    log(_progress(label, epoch, cfg.num_epochs, records, alive, num * rep.steps_per_epoch * cfg.batch_size / seconds,
                  (time.time() - started) / (epoch - last_epoch)))
  params = [None if host_state is None else _model(host_state['params'], m) for m in range(num)]
  summaries = [_summary(runs[m], outs[m], records[m], params[m], started) if alive[m] else None for m in range(num)]
  return summaries, list(np.flatnonzero(~alive))


def _finish_epoch(run, out: Workdir, epoch: int, state, step_metrics, test, seconds: float, record: dict,
                  log) -> bool:
  """Writes one run's epoch (metrics, checkpoint, figures) unless its loss is not finite; returns
  whether the run is still alive."""
  try:
    train._check_finite(np.asarray(step_metrics['loss']), epoch, run.steps_per_epoch, out)
  except FloatingPointError as e:
    log(f'{out.path}: {e}')
    return False
  record.clear()
  record.update({**{f'train/{k}': float(np.mean(v)) for k, v in step_metrics.items()},
                 **{f'test/{k}': float(v) for k, v in test.items()},
                 'epoch_time_s': seconds,
                 'examples_per_s': run.steps_per_epoch * run.config.train.batch_size / seconds})
  out.write_metrics(int(state['step']), epoch, record)
  out.save(epoch, state)
  train._figures(run, state['params'], out, epoch)
  return True


def _summary(run: train.Run, out: Workdir, record: dict, params, started: float) -> dict[str, Any]:
  """Writes the run's final figures and summary.json, with the keys of a single run's, including
  ``evaluate.final_metrics`` (NLL, active units) when ``eval.final_metrics`` (``wall_time_s`` is the group's). ``params``: the final parameters, or None to restore them (a run that had finished
  training but not its summary)."""
  record = record or out.read_metrics()[-1]
  params = params if params is not None else out.restore(jax.eval_shape(run.init_state))[0]['params']
  train._final_figures(run, params, out)
  final = (evaluate.final_metrics(run, params, jnp.asarray(run.dataset.x_test))
           if run.config.eval.final_metrics else {})
  summary = {**{k: v for k, v in record.items() if '/' in k}, **final, 'epochs': run.config.train.num_epochs,
             'num_params': sum(x.size for x in jax.tree.leaves(params)),
             'wall_time_s': time.time() - started}
  out.write_summary(summary)
  return summary


def _progress(label: str, epoch: int, num_epochs: int, records: list[dict], alive: np.ndarray,
              model_examples_per_s: float, seconds_per_epoch: float) -> str:
  """One line for all models: the range over runs of the loss and the main test metric."""
  live = [r for r, a in zip(records, alive) if a]
  shown = []
  for key in ('train/loss', 'test/neg_elbo' if live and 'test/neg_elbo' in live[0] else 'test/recon'):
    values = [r[key] for r in live if key in r]
    if values:
      shown.append(f'{key} {min(values):.4g}..{max(values):.4g}')
  eta = time.strftime('%H:%M:%S', time.gmtime(seconds_per_epoch * (num_epochs - epoch)))
  return (f'{label} epoch {epoch}/{num_epochs} | {len(live)}/{len(records)} models | {" | ".join(shown)} | '
          f'{model_examples_per_s:,.0f} model-examples/s | ETA {eta}')
