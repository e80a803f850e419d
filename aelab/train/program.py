"""The compiled functions of a group of models that share their structure (a single run is a group of one).

``Program(runs, dataset)`` holds, for ``K`` runs, ``init`` (their stacked initial states), ``epoch`` (one
epoch of every model, their test metrics and figure reconstructions, in one jitted call) and ``final``
(the end-of-training arrays). ``aelab/engine.py`` runs them; it re-exports the names here.
"""
import concurrent.futures
import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab import config as config_lib, data, models

from aelab.train import figures, optimizers, parallel

from aelab.eval import metrics

from aelab.nn import compiler, nets
from aelab.models import Family


def make_train_epoch(train_step: Callable, batch_size: int, dynamic_binarize: bool,
                     batch_sharding: jax.sharding.Sharding | None = None,
                     to_float32: Callable[[jax.Array], jax.Array] | None = None) -> Callable:
  """Jitted ``train_epoch(state, x_NxD, epoch_key, hp) -> (state, metrics of every step)``; ``x_NxD`` may be a
  ``data.Labeled`` pair (a conditional family's examples with their labels: each batch is a pair too).

  One ``lax.scan`` over ``N // batch_size`` batches of a fresh permutation (the remainder is dropped);
  the data stays on the device and no Python runs per step. ``batch_sharding`` (see
  ``parallel.batch_sharding``) splits each batch over devices: data parallelism, the same numbers up to
  float rounding. ``to_float32`` (e.g. ``Dataset.to_float32``) turns each gathered batch of stored
  examples (uint8 images) into float32 on the device, so the data stays compact. The epoch is pure in
  its arguments, so a group ``vmap``s it over a leading model axis of ``state``, ``epoch_key`` and
  ``hp`` (each model its own permutation and step keys, the data shared).
  """

  @jax.jit
  def train_epoch(state, x_NxD, epoch_key, hp):
    perm_key, step_key = jax.random.split(epoch_key)
    num_batches = data.num_examples(x_NxD) // batch_size
    perm = jax.random.permutation(perm_key, data.num_examples(x_NxD))[:num_batches * batch_size]
    gather = (lambda batch_idx: data.take(x_NxD, batch_idx)) if to_float32 is None else (
        lambda batch_idx: to_float32(data.take(x_NxD, batch_idx)))
    body = _train_body(train_step, step_key, hp, gather, dynamic_binarize, batch_sharding)
    return jax.lax.scan(body, state, perm.reshape(num_batches, batch_size))

  return train_epoch


def max_abs(tree: Any) -> jax.Array:
  """``max |x|`` over every leaf of ``tree`` (float32 scalar; NaN if any entry is NaN)."""
  return jnp.max(jnp.stack([jnp.max(jnp.abs(x)).astype(jnp.float32) for x in jax.tree.leaves(tree)]))


def _train_body(train_step: Callable, step_key: jax.Array, hp: Any, batch: Callable, dynamic_binarize: bool,
                batch_sharding: jax.sharding.Sharding | None) -> Callable:
  """The scanned step: ``batch(x)`` gives the float32 B x D batch of the scanned input ``x``."""

  def body(state, scanned):
    binarize_key, objective_key = jax.random.split(jax.random.fold_in(step_key, state['step']))
    x = batch(scanned)
    x = x if batch_sharding is None else jax.lax.with_sharding_constraint(x, batch_sharding)
    x = data.dynamic_binarize(binarize_key, x) if dynamic_binarize else x
    return train_step(state, x, objective_key, hp)

  return body


def make_train_chunk(train_step: Callable, binarize: str, binarize_threshold: float,
                     batch_sharding: jax.sharding.Sharding | None = None,
                     to_float32: Callable[[jax.Array], jax.Array] = lambda x: data.to_float32(x, 255)) -> Callable:
  """``train_chunk(state, x_CxBxD, epoch_key, hp) -> (state, metrics of the C steps)``: a ``lax.scan``
  over ``C`` batches streamed from the host (aelab/stream.py), uint8 (made float32 here, on the device,
  by ``to_float32``: ``Dataset.to_float32``) or float32 in [0, 1], binarized per ``data.binarize`` as
  ``data.load`` does. The step keys
  are those of :func:`make_train_epoch` (``fold_in`` of the epoch's step key and the global step), so a
  streamed epoch differs from an in-memory one only in its batch order."""

  def to_float(x_BxD):
    x = to_float32(x_BxD)
    return (x > binarize_threshold).astype(jnp.float32) if binarize == 'static' else x

  def train_chunk(state, x_CxBxD, epoch_key, hp):
    _, step_key = jax.random.split(epoch_key)
    body = _train_body(train_step, step_key, hp, to_float, binarize == 'dynamic', batch_sharding)
    return jax.lax.scan(body, state, x_CxBxD)

  return train_chunk


def check_compatible(config: ml_collections.ConfigDict, dataset: data.Dataset) -> None:
  """Checks config choices against the data. Raises ConfigError saying which field to change, DataError
  (``data.check_labels``) for a conditional family on data without labels or with more classes than it has."""
  tabular = dataset.kind != 'image'
  if tabular and config.model.likelihood == 'bernoulli':
    raise config_lib.ConfigError('model.likelihood=bernoulli needs data in [0, 1]; for tabular data use '
                                 '--config.model.likelihood=mse (or gaussian for a VAE).')
  if tabular and config.model.likelihood != 'bernoulli' and config.model.output_activation == 'sigmoid':
    raise config_lib.ConfigError('model.output_activation=sigmoid bounds reconstructions to (0, 1), but standardized '
                                 'tabular features are not: set --config.model.output_activation=identity.')
  if tabular and config.corruption.name == 'gaussian' and config.corruption.clip:
    raise config_lib.ConfigError('Gaussian corruption clips to [0, 1], which is wrong for standardized '
                                 'tabular data: set --config.corruption.clip=False.')
  if config.model.net == 'conv':
    if dataset.kind != 'image':
      raise config_lib.ConfigError('model.net=conv needs images, but this data is tabular: set '
                                   '--config.model.net=mlp.')
    try:
      nets.check_conv_shape(dataset.shape, len(config.model.conv_channels))
    except ValueError as e:
      raise config_lib.ConfigError(str(e)) from None
  if config.train.batch_size > len(dataset.train):
    raise config_lib.ConfigError(f'train.batch_size={config.train.batch_size} is larger than the '
                                 f'{len(dataset.train)} training examples; lower it.')
  num_classes = models.get(config, dataset.shape).num_classes
  if num_classes:
    data.check_labels(dataset, num_classes, f'model.name={config.model.name} ({num_classes} classes)')


@dataclasses.dataclass
class Run:
  """One model of a group: its config, family, traced hyperparameters (float32 scalars) and keys."""
  config: ml_collections.ConfigDict
  family: Family
  hp: dict[str, jax.Array]
  init_key: jax.Array
  train_key: jax.Array
  name: str = ''


def make_run(config: ml_collections.ConfigDict, data_shape: Sequence[int], name: str = '') -> Run:
  """The ``Run`` of ``config`` for examples of ``data_shape``. Raises ValueError for a model that cannot
  take that shape."""
  init_key, train_key = run_keys(config.seed)
  hp = {k: jax.device_put(np.float32(v)) for k, v in models.hyperparams(config).items()}  # a copy, no program
  return Run(config, models.get(config, data_shape), hp, init_key, train_key, name)


@functools.lru_cache(maxsize=1)
def _keys_program() -> Callable:
  return jax.jit(lambda seed: tuple(jax.random.split(jax.random.key(seed))),
                 compiler_options=compiler.on_cpu(compiler.INTEGER))


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """``(init_key, train_key)``: ``jax.random.split(jax.random.key(seed))``, as one program compiled with
  ``aelab.nn.compiler.INTEGER`` (the same keys; eagerly, a cold start compiled three); a seed outside the
  int32 range takes the eager path."""
  if -2**31 <= seed < 2**31:
    return _keys_program()(np.int32(seed))
  init_key, train_key = jax.random.split(jax.random.key(seed))
  return init_key, train_key


def make_train_step(run: Run, total_steps: int) -> tuple[Callable, Callable]:
  """``(init_state(init_key), train_step(state, x_BxD, key, hp))`` of ``run``'s family with its optimizer
  (``optimizers.make_swept_optimizer``: the learning rate in the optimizer state)."""
  tx = optimizers.make_swept_optimizer(run.config.optimizer, total_steps)
  if run.family.make_update is not None:
    init_opt_state, train_step = run.family.make_update(tx)
  else:
    init_opt_state, train_step = tx.init, optimizers.make_train_step(run.family.objective, tx)

  def init_state(init_key, x_1xD):
    params = run.family.init(init_key, x_1xD)
    return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': init_opt_state(params)}

  return init_state, train_step


def on_stored_inputs(family: Family, to_float32: Callable[[jax.Array], jax.Array]) -> Family:
  """``family`` whose functions that take examples (eval, reconstruct, encode, log_weights, split_eval) take them as
  the dataset stores them (uint8 images) and convert each batch with ``to_float32`` first."""
  log_weights = family.log_weights
  return dataclasses.replace(
      family,
      eval=lambda params, x_BxD, key, hp: family.eval(params, to_float32(x_BxD), key, hp),
      reconstruct=lambda params, x_BxD, key, hp: family.reconstruct(params, to_float32(x_BxD), key, hp),
      encode=lambda params, x_BxD: family.encode(params, to_float32(x_BxD)),
      split_eval=None if family.split_eval is None else (
          lambda params, x_MxD, hp: family.split_eval(params, to_float32(x_MxD), hp)),
      log_weights=None if log_weights is None else (
          lambda params, x_BxD, key, k, hp=None: log_weights(params, to_float32(x_BxD), key, k, hp)))


def over_models(fn: Callable, num_models: int, in_axes: Sequence[int | None], at_once: int = 0) -> Callable:
  """``fn`` over a leading model axis: ``vmap`` for several models; for one, ``fn`` on the row itself
  (the single-model program, unchanged) with the axis added back to its outputs. With ``0 < at_once <
  num_models`` (``train.models_at_once``), ``at_once`` models vmapped at a time, one block of them after
  the other (:func:`_mapped`), so that the working memory of ``fn`` (e.g. a step's ``B x M`` activations)
  is that of ``at_once`` models, not of all of them; the numbers are vmap's to float rounding. The mapped
  arguments (``in_axes`` 0) carry the model axis; the others (None) are shared."""
  if num_models > 1 and 0 < at_once < num_models:
    return _mapped(fn, in_axes, at_once)
  if num_models > 1:
    return jax.vmap(fn, in_axes=tuple(in_axes))

  def one(*args):
    rows = [a if axis is None else jax.tree.map(lambda x: x[0], a) for a, axis in zip(args, in_axes)]
    return jax.tree.map(lambda x: x[None], fn(*rows))

  return one


def _mapped(fn: Callable, in_axes: Sequence[int | None], at_once: int) -> Callable:
  """:func:`over_models` ``at_once`` models at a time: ``jax.lax.map(..., batch_size=at_once)``, or, when
  ``fn`` returns ``(new first argument, other outputs)`` (a training step or epoch: the state), a
  ``fori_loop`` that writes each block of new states into the stacked states it reads them from, so that
  the states are held once (in place when the caller donates them), not also as the loop's stacked output."""
  if any(axis not in (0, None) for axis in in_axes):
    raise ValueError(f'over_models maps the leading axis: in_axes {in_axes} must be 0 or None.')

  def mapped(*args):
    moving = tuple(a for a, axis in zip(args, in_axes) if axis is not None)

    def rows_fn(rows):
      found = iter(rows)
      return fn(*[a if axis is None else next(found) for a, axis in zip(args, in_axes)])

    if in_axes[0] != 0 or not _updates_first(rows_fn, moving):
      return jax.lax.map(rows_fn, moving, batch_size=at_once)
    return _in_place(jax.vmap(rows_fn), moving, at_once)

  return mapped


def _updates_first(rows_fn: Callable, moving: tuple) -> bool:
  """Whether ``rows_fn`` of one model's rows returns a pair whose first item has the first argument's
  structure, shapes and dtypes (a new state)."""
  row = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), moving)
  out = jax.eval_shape(rows_fn, row)
  first = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), moving[0])
  return isinstance(out, tuple) and len(out) == 2 and jax.tree.structure(out[0]) == jax.tree.structure(first) and all(
      (a.shape, a.dtype) == (b.shape, b.dtype) for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(first)))


def _in_place(block_fn: Callable, moving: tuple, at_once: int) -> tuple:
  """``block_fn`` (vmapped) over blocks of ``at_once`` rows of ``moving`` (and a last, smaller block), each
  block's new states written over its rows of ``moving[0]`` and its other outputs into zeros of their shape."""
  k = jax.tree.leaves(moving)[0].shape[0]
  count, rest = divmod(k, at_once)
  take = lambda tree, start, size: jax.tree.map(  # noqa: E731
      lambda x: jax.lax.dynamic_slice_in_dim(x, start, size), tree)
  put = lambda tree, part, start: jax.tree.map(  # noqa: E731
      lambda x, p: jax.lax.dynamic_update_slice_in_dim(x, p, start, 0), tree, part)
  other = jax.eval_shape(block_fn, moving)[1]  # the other outputs of all k models (shapes only)
  others = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), other)

  def block(start, size, carry):
    states, others = carry
    new_states, new_others = block_fn((take(states, start, size), *take(moving[1:], start, size)))
    return put(states, new_states, start), put(others, new_others, start)

  carry = jax.lax.fori_loop(0, count, lambda i, c: block(i * at_once, at_once, c), (moving[0], others))
  return block(count * at_once, rest, carry) if rest else carry


def stack(trees: Sequence[Any]) -> Any:
  """Host trees stacked on a new leading model axis."""
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)


def row(tree: Any, m: int) -> Any:
  """Model ``m``'s slice of a tree with a leading model axis (host arrays)."""
  return jax.tree.map(lambda x: np.asarray(x[m]), tree)


class Program:
  """The compiled functions of one group of ``K`` runs (sharing their structure) on ``dataset``.

  ``init(init_keys_K, rates_K) -> state_K``; ``epoch(state_K, x_train, x_test, x_fig, epoch, train_keys_K,
  hp_K) -> (state_K, out)``, where ``out`` holds each model's per-step training metrics (``K x S``), its
  test metrics (``K``), the largest magnitude of its parameters (``param_max_abs``, ``K``) and, with
  ``x_fig``, the figure images' ``x_tilde`` and ``x_hat``; ``final(params_K, x_test) ->
  figures.make_final_arrays`` per model. For streamed data (aelab/stream.py) an epoch is
  ``chunk(state_K, x_CxBxD, epoch, train_keys_K, hp_K) -> (state_K, train metrics K x C)`` per chunk of
  host batches, then ``test(state_K, x_test, x_fig, hp_K)`` (the test metrics, ``param_max_abs`` and the
  figure images). Several models are sharded over the local devices along the model axis; one model over
  several devices shards its batch (data parallel).
  """

  def __init__(self, runs: Sequence[Run], dataset: data.Dataset, devices: Sequence[jax.Device] | None = None):
    rep, cfg = runs[0], runs[0].config
    self.num_models = len(runs)
    self.steps_per_epoch = len(dataset.train) // cfg.train.batch_size
    self.family = on_stored_inputs(rep.family, dataset.to_float32)  # takes the stored (uint8) test split
    init_state, train_step = make_train_step(rep, self.steps_per_epoch * cfg.train.num_epochs)
    k = self.num_models
    self.mesh = parallel.model_mesh(k, devices) if k > 1 else None
    # models a step computes at once (train.models_at_once), on one device; several devices split the models
    at_once = cfg.train.get('models_at_once', 0) if self.mesh is None or self.mesh.devices.size == 1 else 0
    batch_sharding = None if k > 1 else parallel.batch_sharding(parallel.data_mesh(cfg.train.batch_size, devices))
    train_epoch = make_train_epoch(train_step, cfg.train.batch_size, cfg.data.binarize == 'dynamic', batch_sharding,
                                   dataset.to_float32)
    evaluate = metrics.make_evaluate(self.family.eval, cfg.train.eval_batch_size, self.family.split_eval)
    reconstruct = self.family.reconstruct
    x_1xD = jnp.zeros((1, dataset.train.shape[1]), jnp.float32)
    self.sharding = (None if self.mesh is None else
                     jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(parallel.MODEL_AXIS)))

    def init(init_keys, rates):
      states = over_models(lambda key: init_state(key, x_1xD), k, [0])(init_keys)
      return {**states, 'opt_state': optimizers.set_learning_rates(states['opt_state'], rates)}

    def one_epoch(state, x_train, x_test, x_fig, epoch, train_key, hp):
      state, step_metrics = train_epoch(state, x_train, jax.random.fold_in(train_key, epoch), hp)
      return state, {'train': step_metrics, **_test_outputs(evaluate, reconstruct, state, x_test, x_fig, hp)}

    def epoch(state, x_train, x_test, x_fig, epoch, train_keys, hp):
      return over_models(one_epoch, k, [0, None, None, None, None, 0, 0], at_once)(
          state, x_train, x_test, x_fig, epoch, train_keys, hp)

    train_chunk = make_train_chunk(train_step, cfg.data.binarize, cfg.data.binarize_threshold, batch_sharding,
                                   dataset.to_float32)

    def chunk(state, x_CxBxD, epoch, train_keys, hp):  # streamed data: C batches of every model
      return over_models(lambda s, x, key, h: train_chunk(s, x, jax.random.fold_in(key, epoch), h), k,
                         [0, None, 0, 0], at_once)(state, x_CxBxD, train_keys, hp)

    def test(state, x_test, x_fig, hp):  # streamed data: the end of one_epoch
      return over_models(lambda s, h: _test_outputs(evaluate, reconstruct, s, x_test, x_fig, h), k, [0, 0],
                         at_once)(state, hp)

    final_arrays = figures.make_final_arrays(self.family, cfg)
    jit = lambda f, **kw: jax.jit(f, **kw) if self.sharding is None else jax.jit(f, out_shardings=self.sharding, **kw)  # noqa: E731
    self.init, self.epoch, self.test = jit(init), jit(epoch), jit(test)
    self.chunk = jit(chunk, donate_argnums=0)  # the state in place: one copy of the models' states, not two
    self.final = jit(lambda params, x_test: over_models(final_arrays, k, [0, None])(params, x_test))

  def shard(self, tree: Any) -> Any:
    """Puts a tree with a leading model axis on the devices (split along the model axis)."""
    return jax.device_put(tree, self.sharding) if self.sharding is not None else jax.device_put(tree)

  def replicate(self, tree: Any) -> Any:
    """Puts data shared by the models on every device of the group."""
    return parallel.replicate(tree, self.mesh) if self.mesh is not None else jax.device_put(tree)


def signature(tree: Any) -> Any:
  """The shapes, dtypes, weak types and shardings of ``tree``'s leaves (arrays or ``ShapeDtypeStruct``s):
  what a compiled program must have been lowered for to take ``tree``."""
  def leaf(x):
    aval = jax.typeof(x)
    sharding = getattr(x, 'sharding', None)  # a mesh's; a single device's is the default either way
    mesh_sharding = sharding if isinstance(sharding, jax.sharding.NamedSharding) else None
    return aval.shape, aval.dtype, aval.weak_type, mesh_sharding
  return jax.tree.map(leaf, tree)


def compiler_options(name: str) -> dict | None:
  """``aelab.nn.compiler.ONCE`` on the CPU, less what ``XLA_FLAGS`` sets, for the programs that run once per
  training (``init`` and ``final``); None (XLA's defaults) for the epoch."""
  return compiler.on_cpu(compiler.ONCE, unless_xla_flags=True) if name in ('init', 'final') else None


class Ahead:
  """A group's ``init``, in-memory ``epoch`` and ``final`` programs, lowered in the calling thread and
  compiled together on a small pool, each as soon as it is lowered: XLA compiles one program on about one
  core, so on a machine with two the three overlap (the compilation is most of a cold start). Each is
  compiled with its :func:`compiler_options`. The epoch and final programs are lowered for the state
  ``init`` will give (``jax.eval_shape``); :meth:`get` hands one out when its arguments have the shapes,
  dtypes and shardings it was lowered for, else compiles it for them (a restored state). ``init_args`` are
  the arguments the init program was lowered for (:func:`aelab.train.loop.init_args`)."""

  def __init__(self, program: 'Program', init_args: tuple, epoch_args: tuple | None, x_test: jax.Array | None):
    self.program, self.init_args = program, init_args
    self._compiled: dict[str, tuple[concurrent.futures.Future, Any]] = {}
    self._pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix='compile')
    try:  # each program compiles while the next is lowered (lowering holds the GIL, XLA's compilation does not)
      self._submit('init', program.init, init_args)
      abstract = jax.eval_shape(program.init, *init_args)
      if program.sharding is not None:
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=program.sharding),
                                abstract)
      if epoch_args is not None:
        self._submit('epoch', program.epoch, (abstract, *epoch_args))
      if x_test is not None:
        self._submit('final', program.final, (abstract['params'], x_test))
    finally:
      self._pool.shutdown(wait=False)

  def _submit(self, name: str, fn: Any, args: tuple) -> None:
    """Lowers the jitted ``fn`` for ``args`` here and compiles it on the pool."""
    self._compiled[name] = (self._pool.submit(fn.lower(*args).compile, compiler_options(name)), signature(args))

  def get(self, name: str, *args: Any) -> Callable:
    """The compiled ``name`` program (``init``, ``epoch`` or ``final``) for ``args`` (waits for it)."""
    future, lowered_for = self._compiled.pop(name, (None, None))
    if future is not None and signature(args) == lowered_for:
      return future.result()
    return getattr(self.program, name).lower(*args).compile(compiler_options(name))


def _test_outputs(evaluate: Callable, reconstruct: Callable, state: Any, x_test: jax.Array, x_fig: jax.Array | None,
                  hp: Any) -> dict:
  """One model's end-of-epoch outputs: its test metrics, the largest magnitude of its parameters
  (``param_max_abs``, for the engine's divergence check) and, with ``x_fig``, the figure images'
  ``x_tilde`` and ``x_hat``."""
  out = {'test': evaluate(state['params'], x_test, hp), 'param_max_abs': max_abs(state['params'])}
  if x_fig is not None:
    out['x_tilde'], out['x_hat'] = reconstruct(state['params'], x_fig, jax.random.key(metrics.EVAL_SEED), hp)
  return out


def abstract_state(run: Run, dataset: data.Dataset) -> Any:
  """Shapes and dtypes of one model's state (no computation)."""
  init_state, _ = make_train_step(run, 1)
  return jax.eval_shape(init_state, run.init_key, jnp.zeros((1, dataset.train.shape[1]), jnp.float32))
