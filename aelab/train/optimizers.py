"""Optimizers and the pure gradient step.

Every run's optimizer is ``config.optimizer`` at learning rate 1 followed by ``optax.scale`` by the run's
learning rate, held in the optimizer state by ``optax.inject_hyperparams``: runs that differ only in
their learning rate then share one compiled step (a sweep), and a single run's checkpoint has the same
structure as a sweep run's. The update is the same as optax's with the rate inside (bit for bit with a
constant schedule, since optax multiplies by ``-lr * schedule`` last; to float rounding with a decaying
schedule).
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.nn.schedules import kl_warmup_factor

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


def make_swept_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """``config.optimizer`` at learning rate 1, then ``optax.scale(learning_rate)`` with the rate in the
  optimizer state (``step_size``), so that :func:`set_learning_rates` can give each model its own."""
  unit = opt.copy_and_resolve_references()
  unit.learning_rate = 1.0
  scale = optax.inject_hyperparams(optax.scale)(step_size=opt.learning_rate)
  return optax.chain(make_optimizer(unit, total_steps), scale)


def set_learning_rates(opt_state: Any, rates: jax.Array) -> Any:
  """``opt_state`` of :func:`make_swept_optimizer` (leading model axis) with ``rates`` (one per model)."""
  return optax.tree_utils.tree_set(opt_state, step_size=jnp.asarray(rates, jnp.float32))


def make_train_step(objective: Callable, tx: optax.GradientTransformation) -> Callable:
  """``train_step(state, x_BxD, key, hp) -> (state, metrics)``: one gradient step, a pure function.

  The objective sees ``hp['kl_weight']`` times :func:`kl_warmup_factor` of ``state['step']`` and
  ``hp['kl_warmup_steps']`` (unchanged when ``hp`` has no ``kl_warmup_steps``: families without a KL),
  and ``hp['capacity']``, ``hp['capacity_max']`` times the same ramp over ``hp['capacity_steps']``.
  """

  def train_step(state: State, x_BxD, key, hp):
    if 'kl_warmup_steps' in hp:
      hp = {**hp, 'kl_weight': hp['kl_weight'] * kl_warmup_factor(state['step'], hp['kl_warmup_steps'])}
    if 'capacity_steps' in hp:  # annealed capacity C(t) (Burgess et al. 2018), the same linear ramp
      hp = {**hp, 'capacity': hp['capacity_max'] * kl_warmup_factor(state['step'], hp['capacity_steps'])}
    grads, metrics = jax.grad(objective, has_aux=True)(state['params'], x_BxD, key, hp)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    return {'step': state['step'] + 1, 'params': params, 'opt_state': opt_state}, metrics

  return train_step
