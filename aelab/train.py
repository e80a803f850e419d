"""Training: one jitted pure train step, an epoch that is one jitted ``lax.scan``, evaluation, outputs.

``train_and_evaluate(config, workdir)`` is the whole run. Keys (DESIGN.md): ``init_key, train_key =
split(key(seed))``; epoch ``e`` uses ``fold_in(train_key, e)``, split into a permutation key and a step
key; step ``s`` (global) uses ``fold_in(step_key, s)``, split once into a binarization key and an
objective key (which the objective splits for corruption and reparameterized sampling).
"""
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aelab import config as config_lib
from aelab import data, evaluate, latent, models, nets, parallel, plots
from aelab.workdir import Workdir

State = dict[str, Any]  # {'step': int32 scalar, 'params': pytree, 'opt_state': pytree}


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """The optax optimizer of ``config.optimizer`` with its learning-rate schedule over ``total_steps``."""
  lr = opt.learning_rate
  schedules = {
      'constant': lambda: lr,
      'cosine': lambda: optax.cosine_decay_schedule(lr, max(total_steps, 1)),
      'warmup_cosine': lambda: optax.warmup_cosine_decay_schedule(
          0.0, lr, opt.warmup_steps, max(total_steps, opt.warmup_steps + 1)),
  }
  schedule = schedules[opt.schedule]()
  optimizers = {
      'adam': lambda: optax.adam(schedule),
      'adamw': lambda: optax.adamw(schedule, weight_decay=opt.weight_decay),
      'sgd': lambda: optax.sgd(schedule, momentum=opt.momentum or None),
      'adadelta': lambda: optax.adadelta(schedule),
  }
  return optimizers[opt.name]()


def kl_warmup_factor(step: jax.Array, warmup_steps: jax.Array) -> jax.Array:
  """The KL warm-up factor ``min(1, step / warmup_steps)`` (1 when ``warmup_steps`` is 0): ``kl_weight``
  rises linearly from 0 at step 0 to its full value at ``warmup_steps`` (Bowman et al. 2016; Sonderby et
  al. 2016). Both arguments may be traced; returns a float32 scalar."""
  warmup_steps = jnp.asarray(warmup_steps, jnp.float32)
  ramp = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / jnp.maximum(warmup_steps, 1.0))
  return jnp.where(warmup_steps > 0, ramp, 1.0)


def make_train_step(objective: Callable, tx: optax.GradientTransformation) -> Callable:
  """``train_step(state, x_BxD, key, hp) -> (state, metrics)``: one gradient step, a pure function.

  The objective sees ``hp['kl_weight']`` times :func:`kl_warmup_factor` of ``state['step']`` and
  ``hp['kl_warmup_steps']`` (unchanged without warm-up, or when ``hp`` has no ``kl_warmup_steps``).
  """

  def train_step(state: State, x_BxD, key, hp):
    if 'kl_warmup_steps' in hp:  # objectives without a KL term (a classifier) pass no warm-up
      hp = {**hp, 'kl_weight': hp['kl_weight'] * kl_warmup_factor(state['step'], hp['kl_warmup_steps'])}
    grads, metrics = jax.grad(objective, has_aux=True)(state['params'], x_BxD, key, hp)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    return {'step': state['step'] + 1, 'params': params, 'opt_state': opt_state}, metrics

  return train_step


def make_train_epoch(train_step: Callable, batch_size: int, dynamic_binarize: bool,
                     batch_sharding: jax.sharding.Sharding | None = None) -> Callable:
  """Jitted ``train_epoch(state, x_NxD, epoch_key, hp) -> (state, metrics of every step)``.

  One ``lax.scan`` over ``N // batch_size`` batches of a fresh permutation (the remainder is dropped);
  the data stays on the device and no Python runs per step. ``batch_sharding`` (see
  ``parallel.batch_sharding``) splits each batch over devices: data parallelism, the same numbers up to
  float rounding.
  The epoch is pure in its arguments, so a sweep ``vmap``s it over a leading model axis of ``state``,
  ``epoch_key`` and ``hp`` (each model its own permutation and step keys, the data shared).
  """

  @jax.jit
  def train_epoch(state, x_NxD, epoch_key, hp):
    perm_key, step_key = jax.random.split(epoch_key)
    num_batches = x_NxD.shape[0] // batch_size
    perm = jax.random.permutation(perm_key, x_NxD.shape[0])[:num_batches * batch_size]

    def body(state, batch_idx):
      binarize_key, objective_key = jax.random.split(jax.random.fold_in(step_key, state['step']))
      x = x_NxD[batch_idx]
      x = x if batch_sharding is None else jax.lax.with_sharding_constraint(x, batch_sharding)
      x = data.dynamic_binarize(binarize_key, x) if dynamic_binarize else x
      return train_step(state, x, objective_key, hp)

    return jax.lax.scan(body, state, perm.reshape(num_batches, batch_size))

  return train_epoch


def check_compatible(config: ml_collections.ConfigDict, dataset: data.Dataset) -> None:
  """Checks config choices against the data. Raises ConfigError saying which field to change."""
  tabular = dataset.kind != 'image'
  if tabular and config.model.likelihood == 'bernoulli':
    raise config_lib.ConfigError('model.likelihood=bernoulli needs data in [0, 1]; for tabular data use '
                                 '--config.model.likelihood=mse (or gaussian for a VAE).')
  if tabular and config.model.likelihood != 'bernoulli' and config.model.output_activation == 'sigmoid':
    raise config_lib.ConfigError('model.output_activation=sigmoid bounds reconstructions to (0, 1), but '
                                 'standardized tabular features are not: set --config.model.output_activation=identity.')
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
  if config.train.batch_size > len(dataset.x_train):
    raise config_lib.ConfigError(f'train.batch_size={config.train.batch_size} is larger than the '
                                 f'{len(dataset.x_train)} training examples; lower it.')


class Run:
  """Everything a run builds from its config and data: model, pure functions, jitted epoch and eval.

  ``train_step(state, x_BxD, key, hp) -> (state, metrics)`` is pure (a sweep vmaps it). A family module
  may export ``make_train_step(model, config, total_steps) -> (init_opt_state(params), train_step)``
  when one optimizer over one objective does not fit (the AAE); otherwise ``make_objective`` and
  ``config.optimizer`` make it.
  """

  def __init__(self, config: ml_collections.ConfigDict, dataset: data.Dataset):
    self.config, self.dataset = config, dataset
    self.family = models.get(config.model.name)
    self.model = self.family.build(config, dataset.shape)
    self.hp = {k: jnp.asarray(v, jnp.float32) for k, v in models.hyperparams(config).items()}
    self.steps_per_epoch = len(dataset.x_train) // config.train.batch_size
    total_steps = self.steps_per_epoch * config.train.num_epochs
    if hasattr(self.family, 'make_train_step'):  # e.g. the AAE: several optimizers in one step
      self.init_opt_state, self.train_step = self.family.make_train_step(self.model, config, total_steps)
    else:
      tx = make_optimizer(config.optimizer, total_steps)
      self.init_opt_state = tx.init
      self.train_step = make_train_step(self.family.make_objective(self.model, config), tx)
    data_mesh = parallel.data_mesh(config.train.batch_size)  # None on one device
    self.train_epoch = make_train_epoch(self.train_step, config.train.batch_size,
                                        config.data.binarize == 'dynamic', parallel.batch_sharding(data_mesh))
    self.evaluate = evaluate.make_evaluate(self.family.make_eval(self.model, config),
                                           config.train.eval_batch_size)
    self.reconstruct = jax.jit(self.family.make_reconstruct(self.model, config))
    self.init_key, self.train_key = jax.random.split(jax.random.key(config.seed))

  def init_state(self) -> State:
    params = self.family.init(self.model, self.init_key, jnp.zeros((1, self.dataset.x_train.shape[1])))
    return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': self.init_opt_state(params)}


def _check_finite(losses: np.ndarray, epoch: int, steps_per_epoch: int, workdir: Workdir) -> None:
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    last = workdir.checkpoints.latest_step()
    kept = f'the last good checkpoint (epoch {last}) is kept in {workdir.path}' if last else 'no checkpoint yet'
    raise FloatingPointError(
        f'The training loss became {losses[bad[0]]} at epoch {epoch}, step {bad[0] + 1} of {steps_per_epoch}; '
        f'stopped without saving this epoch ({kept}). Lower optimizer.learning_rate, check the data, '
        'or pick another likelihood; rerunning resumes from the last good checkpoint.')


def _figures(run: Run, params, workdir: Workdir, epoch: int) -> None:
  cfg = run.config.train
  if run.dataset.kind != 'image' or not cfg.figures_every or epoch % cfg.figures_every:
    return
  x = jnp.asarray(run.dataset.x_test[:cfg.num_figure_images])
  x_tilde, x_hat = run.reconstruct(params, x, jax.random.key(evaluate.EVAL_SEED), run.hp)
  rows = {'input': x, 'corrupted': x_tilde, 'reconstruction': x_hat}
  if run.config.corruption.name == 'none':
    del rows['corrupted']
  plots.image_rows({k: np.asarray(v) for k, v in rows.items()}, run.dataset.shape,
                   workdir.figure_path(f'reconstructions_epoch{epoch:03d}.png'), f'epoch {epoch}')
  latent.save_reconstructions(workdir.figure_path(latent.RECONSTRUCTIONS_FILE), epoch, np.asarray(x_hat))


def _final_figures(run: Run, params, workdir: Workdir) -> None:
  plots.learning_curves(workdir.read_metrics(), workdir.figure_path('learning_curves.png'))
  if hasattr(run.family, 'make_sample') and run.dataset.kind == 'image':
    samples = run.family.make_sample(run.model, run.config)(params, jax.random.key(evaluate.EVAL_SEED), 32)
    plots.image_grid(np.asarray(samples), run.dataset.shape, workdir.figure_path('samples.png'),
                     title='samples from the prior')
  latent.write_figures(run, params, workdir.figure_path)


_PROGRESS_METRICS = ('train/loss', 'test/recon', 'test/neg_elbo', 'test/kl', 'test/recon_mse',
                     'test/recon_mse_clean_input')


def _progress(epoch: int, num_epochs: int, record: dict, started: float, epochs_done: int) -> str:
  elapsed = time.time() - started
  eta = elapsed / max(epochs_done, 1) * (num_epochs - epoch)
  shown = ' '.join(f'{k}={v:.4g}' for k, v in record.items() if k in _PROGRESS_METRICS)
  return (f'epoch {epoch}/{num_epochs} {shown} | {record["examples_per_s"]:,.0f} examples/s | '
          f'ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains ``config`` and writes the workdir's outputs (see DESIGN.md); resumes from its checkpoints.

  Returns the summary (also written to summary.json): the last epoch's ``train/*`` and ``test/*``
  metrics, plus ``num_params`` and ``wall_time_s``.
  Raises ConfigError or data.DataError for bad input (before training), FloatingPointError when the
  loss stops being finite (the last good checkpoint is kept).
  """
  config_lib.validate(config)
  dataset = data.load(config.data)
  check_compatible(config, dataset)
  run = Run(config, dataset)
  out = Workdir(workdir, config, config.train.keep_checkpoints)
  try:
    return _train(run, out)
  finally:
    out.close()


def _train(run: Run, out: Workdir) -> dict[str, Any]:
  cfg = run.config.train
  initial = run.init_state()
  state, last_epoch = out.restore(initial)
  state = state or initial
  if last_epoch:
    print(f'Resuming from the checkpoint of epoch {last_epoch} in {out.path}', flush=True)
  x_train, x_test = jnp.asarray(run.dataset.x_train), jnp.asarray(run.dataset.x_test)
  started, record = time.time(), {}
  for epoch in range(last_epoch + 1, cfg.num_epochs + 1):
    t0 = time.time()
    new_state, step_metrics = run.train_epoch(state, x_train, jax.random.fold_in(run.train_key, epoch), run.hp)
    _check_finite(np.asarray(step_metrics['loss']), epoch, run.steps_per_epoch, out)
    state = new_state
    test = run.evaluate(state['params'], x_test, run.hp)
    seconds = time.time() - t0
    record = {**{f'train/{k}': float(np.mean(v)) for k, v in step_metrics.items()},
              **{f'test/{k}': float(v) for k, v in test.items()},
              'epoch_time_s': seconds, 'examples_per_s': run.steps_per_epoch * cfg.batch_size / seconds}
    out.write_metrics(int(state['step']), epoch, record)
    out.save(epoch, state)
    _figures(run, state['params'], out, epoch)
    print(_progress(epoch, cfg.num_epochs, record, started, epoch - last_epoch), flush=True)
  if not record:  # already finished: report the last epoch's metrics again
    record = out.read_metrics()[-1]
  _final_figures(run, state['params'], out)
  num_params = sum(x.size for x in jax.tree.leaves(state['params']))
  final = evaluate.final_metrics(run, state['params'], x_test) if run.config.eval.final_metrics else {}
  summary = {**{k: v for k, v in record.items() if '/' in k}, **final, 'epochs': cfg.num_epochs,
             'num_params': num_params, 'wall_time_s': time.time() - started}
  out.write_summary(summary)
  return summary
