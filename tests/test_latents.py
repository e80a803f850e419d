"""Non-Gaussian latents: the categorical VAE with the Gumbel-softmax relaxation (gumbel_vae): its KL, samples,
annealed temperature and training on digits."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from aelab import data, models
from aelab.nn import distributions, schedules
from aelab.train import engine
from conftest import load_config, small


def test_categorical_kl_to_uniform_by_hand():
  logits_BxNxK = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
  by_hand = 0.7 * math.log(3 * 0.7) + 0.2 * math.log(3 * 0.2) + 0.1 * math.log(3 * 0.1) + 0.0
  np.testing.assert_allclose(distributions.kl_categorical_uniform(logits_BxNxK), [by_hand], rtol=1e-5)
  one_hot = jnp.array([[[1.0, 0, 0], [0, 0, 1.0]]])
  np.testing.assert_allclose(distributions.categorical_log_prob(logits_BxNxK, one_hot),
                             [math.log(0.7) + math.log(1 / 3)], rtol=1e-5)


def test_gumbel_samples_follow_the_categorical_and_harden_as_the_temperature_falls():
  probs = jnp.array([0.6, 0.3, 0.1])
  logits_BxNxK = jnp.broadcast_to(jnp.log(probs), (20_000, 1, 3))
  exact = distributions.sample_categorical(jax.random.key(0), logits_BxNxK)
  np.testing.assert_allclose(exact.mean(axis=(0, 1)), probs, atol=0.015)  # Gumbel-max is exact
  for temperature, min_max in ((5.0, None), (0.1, 0.95)):
    soft = distributions.gumbel_softmax(jax.random.key(1), logits_BxNxK, temperature)
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)
    if min_max is not None:  # nearly one-hot, and the argmax follows probs as the exact sampler's does
      assert float(jnp.median(soft.max(-1))) > min_max
      argmax = jax.nn.one_hot(jnp.argmax(soft, -1), 3)
      np.testing.assert_allclose(argmax.mean(axis=(0, 1)), probs, atol=0.015)
  assert float(jnp.mean(distributions.gumbel_softmax(jax.random.key(1), logits_BxNxK, 5.0).max(-1))) < 0.5
  hard = distributions.gumbel_softmax(jax.random.key(2), logits_BxNxK[:4], 1.0, straight_through=True)
  assert set(np.unique(np.asarray(hard)).tolist()) <= {0.0, 1.0}
  grad = jax.grad(lambda lg: distributions.gumbel_softmax(jax.random.key(2), lg, 1.0, True)[:, 0, 0].sum())
  assert float(jnp.abs(grad(logits_BxNxK[:4])).sum()) > 0  # the relaxed sample's gradient goes through


def test_gumbel_temperature_schedule_by_hand():
  np.testing.assert_allclose(schedules.gumbel_temperature(0, 1.0, 0.5, 3e-5, 100), 1.0)
  np.testing.assert_allclose(schedules.gumbel_temperature(10_050, 1.0, 0.5, 3e-5, 100), math.exp(-0.3), rtol=1e-6)
  np.testing.assert_allclose(schedules.gumbel_temperature(10 ** 6, 1.0, 0.5, 3e-5, 100), 0.5)


def _gumbel_run():
  config = small(load_config('gumbel_vae'))
  dataset = data.load(config.data)
  run = engine.make_run(config, dataset.shape)
  return config, dataset, run


def test_gumbel_update_anneals_the_temperature_and_kl_weight_is_traced():
  config, dataset, run = _gumbel_run()
  init_state, train_step = engine.make_train_step(run, total_steps=100)
  x = jnp.asarray(dataset.x_train[:32], jnp.float32)
  state = jax.jit(init_state)(run.init_key, x[:1])
  step = jax.jit(train_step)
  _, m0 = step(state, x, jax.random.key(0), run.hp)
  _, m1 = step({**state, 'step': jnp.int32(20_000)}, x, jax.random.key(0), run.hp)
  np.testing.assert_allclose([m0['temperature'], m1['temperature']], [1.0, math.exp(-0.6)], rtol=1e-5)
  _, m2 = step(state, x, jax.random.key(0), {**run.hp, 'kl_weight': jnp.float32(3.0)})
  np.testing.assert_allclose(m2['loss'] - m0['loss'], 2.0 * m0['kl'], rtol=1e-4)
  assert step._cache_size() == 1  # a sweep over kl_weight or the temperature is one program
  assert set(models.hyperparams(config)) >= {'kl_weight', 'temperature', 'min_temperature', 'anneal_rate'}


def test_gumbel_vae_trains_and_its_nll_is_below_its_neg_elbo(tmp_path):
  summary = engine.train_and_evaluate(small(load_config('gumbel_vae'), epochs=3), str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  losses = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses) == 3 and np.isfinite(losses).all() and losses[2] < losses[0], losses
  assert summary['test/nll'] <= summary['test/neg_elbo'], summary
  assert 1.0 <= summary['test/perplexity'] <= 10.0
