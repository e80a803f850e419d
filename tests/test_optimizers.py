"""aelab.train.optimizers and aelab.nn.schedules: the KL warm-up factor, the train step that applies it, the
per-model learning rate."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aelab.nn import schedules
from aelab.train import optimizers


def test_kl_warmup_factor_is_linear_then_one():
  factors = [float(schedules.kl_warmup_factor(s, 100.0)) for s in (0, 25, 50, 100, 1000)]
  assert factors == [0.0, 0.25, 0.5, 1.0, 1.0]
  assert float(schedules.kl_warmup_factor(0, 0.0)) == 1.0


def test_train_step_passes_the_warmed_up_kl_weight_to_the_objective():
  objective = lambda params, x, key, hp: (jnp.sum(params[None] * x), {'loss': 0.0, 'kl_weight': hp['kl_weight']})  # noqa
  step = jax.jit(optimizers.make_train_step(objective, optax.sgd(0.1)))
  hp = {'kl_weight': jnp.float32(4.0), 'kl_warmup_steps': jnp.float32(10.0)}
  state = {'step': jnp.int32(0), 'params': jnp.ones(3), 'opt_state': optax.sgd(0.1).init(jnp.ones(3))}
  seen = []
  for _ in range(12):
    state, metrics = step(state, jnp.ones((2, 3)), jax.random.key(0), hp)
    seen.append(float(metrics['kl_weight']))
  np.testing.assert_allclose(seen[:3] + seen[-2:], [0.0, 0.4, 0.8, 4.0, 4.0], rtol=1e-6)
  assert int(state['step']) == 12
  np.testing.assert_allclose(state['params'], 1.0 - 12 * 0.1 * 2.0, rtol=1e-5)  # grad of sum(p * x) is 2


def test_swept_optimizer_keeps_each_models_learning_rate_in_its_state():
  opt = ml_collections.ConfigDict(dict(name='sgd', learning_rate=0.1, schedule='constant', warmup_steps=0,
                                       momentum=0.0, weight_decay=0.0))
  tx = optimizers.make_swept_optimizer(opt, total_steps=10)
  params, grads = jnp.ones(3), jnp.array([1.0, 2.0, 3.0])
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates, -0.1 * grads, rtol=1e-6)  # as optax.sgd(0.1)
  stacked = jax.vmap(tx.init)(jnp.ones((2, 3)))
  stacked = optimizers.set_learning_rates(stacked, jnp.array([0.1, 0.5]))
  updates, _ = jax.vmap(tx.update)(jnp.stack([grads, grads]), stacked, jnp.ones((2, 3)))
  np.testing.assert_allclose(updates, [-0.1 * grads, -0.5 * grads], rtol=1e-6)


def test_swept_adam_matches_optax_adam():
  opt = ml_collections.ConfigDict(dict(name='adam', learning_rate=1e-3, schedule='constant', warmup_steps=0,
                                       momentum=0.9, weight_decay=0.0))
  swept, reference = optimizers.make_swept_optimizer(opt, total_steps=10), optax.adam(1e-3)
  params = jnp.array([1.0, -2.0, 3.0])
  state_s, state_r = swept.init(params), reference.init(params)
  for i in range(3):
    grads = jnp.array([0.5, -1.0, 2.0]) * (i + 1)
    updates_s, state_s = swept.update(grads, state_s, params)
    updates_r, state_r = reference.update(grads, state_r, params)
    np.testing.assert_allclose(updates_s, updates_r, rtol=1e-6)
