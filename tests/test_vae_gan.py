"""The VAE/GAN (vae_gan): each part updated by its own loss (no GAN gradient reaches the encoder), the feature
reconstruction by hand, traced weights, and training on digits."""
import json

import jax
import jax.numpy as jnp
import numpy as np

from aelab import data
from aelab.models import vae_gan
from aelab.train import engine
from conftest import load_config, small


def _step_from_init():
  config = small(load_config('vae_gan'))
  dataset = data.load(config.data)
  run = engine.make_run(config, dataset.shape)
  init_state, train_step = engine.make_train_step(run, total_steps=100)
  x = jnp.asarray(dataset.x_train[:32], jnp.float32)
  return config, run, jax.jit(init_state)(run.init_key, x[:1]), jax.jit(train_step), x


def test_vae_gan_updates_each_part_by_its_own_loss():
  config, run, state, step, x = _step_from_init()
  key = jax.random.key(0)
  new, metrics = step(state, x, key, run.hp)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state['params'], new['params'])
  assert all(jax.tree.leaves(changed))  # encoder, decoder and discriminator all move
  np.testing.assert_allclose(metrics['disc_loss'], 3 * np.log(2), atol=0.5)  # near chance at the start
  strong, _ = step(state, x, key, {**run.hp, 'adversarial_weight': jnp.float32(5.0), 'recon_weight': jnp.float32(3.0)})
  enc = lambda s: s['params']['vae']['params']['encoder']  # noqa: E731
  dec = lambda s: s['params']['vae']['params']['decoder']  # noqa: E731
  jax.tree.map(np.testing.assert_array_equal, enc(strong), enc(new))  # the GAN loss does not reach the encoder
  assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), dec(strong), dec(new))))
  assert step._cache_size() == 1  # the weights are traced: one program


def test_vae_gan_feature_reconstruction_by_hand():
  config, run, state, _, x = _step_from_init()
  model, params = run.family.model, state['params']
  parts = vae_gan.step_losses(model, config, params['vae'], params['discriminator'], x, jax.random.key(1), run.hp)
  mean, log_var = model.vae.apply(params['vae'], x, method=model.vae.encode)
  sample_key = jax.random.split(jax.random.key(1))[0]  # step_losses' first half samples the posterior
  z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(sample_key, mean.shape)
  x_tilde = jax.nn.sigmoid(model.vae.apply(params['vae'], z, method=model.vae.decode))
  feats = [model.discriminator.apply(params['discriminator'], v)[1] for v in (x, x_tilde)]
  np.testing.assert_allclose(parts['recon_features'], np.mean(0.5 * np.sum((feats[0] - feats[1]) ** 2, -1)), rtol=1e-4)
  np.testing.assert_allclose(parts['encoder'], parts['kl'] + parts['recon_features'], rtol=1e-5)


def test_vae_gan_trains_on_digits(tmp_path):
  summary = engine.train_and_evaluate(small(load_config('vae_gan'), epochs=3), str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  mse = [r['test/recon_mse'] for r in records if 'test/recon_mse' in r]
  assert all(np.isfinite([r[k] for r in records for k in r if k.startswith('train/')]))
  assert len(mse) >= 3 and mse[-1] < mse[0], mse
  assert 'test/nll' not in summary  # no normalized likelihood, no importance-sampled NLL
