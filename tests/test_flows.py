"""aelab.nn.flows and the flow-posterior VAEs (vae_iaf, vae_planar): log-determinants against jax.jacfwd,
the MADE's autoregressive structure, the ELBO with the flows' log-determinants, and training on digits."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import config as config_lib
from aelab import models
from aelab.models import vae_iaf
from aelab.nn import flows
from aelab.train import engine
from conftest import load_config, small


def _log_abs_det_jacfwd(flow, params, z_BxZ):
  """``log |det df/dz|`` per example from the full Jacobian of one example at a time."""
  one = lambda z_Z: flow.apply(params, z_Z[None])[0][0]  # noqa: E731
  return jnp.array([jnp.linalg.slogdet(jax.jacfwd(one)(z))[1] for z in z_BxZ])


@pytest.mark.parametrize('kind,steps', [('planar', 1), ('planar', 3), ('iaf', 1), ('iaf', 3)])
def test_flow_log_det_equals_log_abs_det_of_jacfwd(kind, steps):
  z_BxZ = 1.5 * jax.random.normal(jax.random.key(0), (4, 5))
  flow = flows.Flow(kind, steps, (16,))
  params = flow.init(jax.random.key(1), z_BxZ)
  # Move away from the near-identity initialization so the determinant is far from 1.
  params = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.key(2), p.shape), params)
  z_k, log_det_B = flow.apply(params, z_BxZ)
  assert z_k.shape == z_BxZ.shape and log_det_B.shape == (4,)
  expected = _log_abs_det_jacfwd(flow, params, z_BxZ)
  assert np.abs(expected).max() > 0.1, expected
  np.testing.assert_allclose(log_det_B, expected, rtol=1e-4, atol=1e-4)


def test_made_output_i_depends_only_on_inputs_before_i():
  step = flows.IAFStep((12, 12))
  z_Z = jax.random.normal(jax.random.key(0), (6,))
  params = step.init(jax.random.key(1), z_Z[None])
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
  jac_ZxZ = jax.jacfwd(lambda z: step.apply(params, z[None])[0][0])(z_Z)
  np.testing.assert_array_equal(np.triu(np.asarray(jac_ZxZ), k=1), 0.0)  # lower triangular: an IAF
  assert np.abs(np.tril(np.asarray(jac_ZxZ), k=-1)).max() > 1e-3  # and not diagonal
  masks = flows.made_masks(4, (5,))
  reach_IxO = masks[0] @ masks[1] > 0  # input j reaches output i exactly when j < i (degrees 1..4)
  np.testing.assert_array_equal(reach_IxO, np.triu(np.ones((4, 4)), k=1) > 0)


def test_iaf_context_conditions_the_step_and_keeps_it_triangular_in_z():
  """With the encoder's context h (Kingma et al. 2016), the log-determinant is still that of dz'/dz (jacfwd at
  a fixed h), the Jacobian in z stays lower triangular, and another h gives another z'."""
  flow = flows.Flow('iaf', 2, (12,))
  z_BxZ = jax.random.normal(jax.random.key(0), (3, 5))
  h_BxC = jax.random.normal(jax.random.key(1), (3, 4))
  params = flow.init(jax.random.key(2), z_BxZ, h_BxC)
  params = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.key(3), p.shape), params)
  assert 'made_context' in params['params']['iaf_0']
  z_k, log_det_B = flow.apply(params, z_BxZ, h_BxC)
  for b in range(3):
    one = lambda z_Z: flow.apply(params, z_Z[None], h_BxC[b:b + 1])[0][0]  # noqa: E731
    np.testing.assert_allclose(log_det_B[b], jnp.linalg.slogdet(jax.jacfwd(one)(z_BxZ[b]))[1], rtol=1e-4, atol=1e-4)
  step = flows.IAFStep((12,))
  step_params = step.init(jax.random.key(4), z_BxZ, h_BxC)
  step_params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(5), p.shape), step_params)
  jac_ZxZ = jax.jacfwd(lambda z: step.apply(step_params, z[None], h_BxC[:1])[0][0])(z_BxZ[0])
  np.testing.assert_array_equal(np.triu(np.asarray(jac_ZxZ), k=1), 0.0)
  other, _ = flow.apply(params, z_BxZ, h_BxC + 1.0)
  assert np.abs(np.asarray(other - z_k)).max() > 1e-3


def test_planar_u_hat_keeps_the_map_invertible():
  w_Z, u_Z = jnp.array([1.0, 0.0]), jnp.array([-3.0, 1.0])  # w.u = -3 < -1: not invertible as it is
  u_hat = flows.planar_u_hat(u_Z, w_Z)
  np.testing.assert_allclose(jnp.dot(w_Z, u_hat), jax.nn.softplus(-3.0) - 1.0, rtol=1e-6)
  np.testing.assert_allclose(u_hat[1], 1.0)  # only the component along w changes


def _family_params_x(name, context_dim=0, **vae_fields):
  config = load_config(name)
  config.vae.update(vae_fields)
  if context_dim:
    config.vae_iaf.context_dim = context_dim
  family = models.get(config, 64)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, 64)))
  hp = {k: jnp.float32(v) for k, v in models.hyperparams(config).items()}
  x = (jax.random.uniform(jax.random.key(1), (8, 64)) > 0.5).astype(jnp.float32)
  return config, family, params, hp, x


@pytest.mark.parametrize('name,context_dim', [('vae_iaf', 0), ('vae_iaf', 6), ('vae_planar', 0)])
def test_flow_elbo_equals_its_terms_by_hand(name, context_dim):
  config, family, params, hp, x = _family_params_x(name, context_dim=context_dim)
  key = jax.random.key(3)
  model = family.model
  _, metrics = jax.jit(family.objective)(params, x, key, hp)
  # By hand: the same z_0 (the key's second half, as the objective draws it), then the flow and the decoder.
  out = model.apply(params, x, method=lambda m, x: m.encoder(x))  # the encoder's units: mean, log_var, h
  assert out.shape == (8, 2 * config.model.latent_dim + context_dim)
  mean, log_var = jnp.split(out[:, :2 * config.model.latent_dim], 2, axis=-1)
  h = out[:, 2 * config.model.latent_dim:] if context_dim else None
  z0 = mean + jnp.exp(0.5 * log_var) * jax.random.normal(jax.random.split(key)[1], (1, *mean.shape))[0]
  z_k, log_det = model.apply(params, z0, h, method=vae_iaf.Model.transform)
  log_q0 = jnp.sum(-0.5 * (np.log(2 * np.pi) + log_var + (z0 - mean) ** 2 / jnp.exp(log_var)), -1)
  log_pz = jnp.sum(-0.5 * (np.log(2 * np.pi) + z_k ** 2), -1)
  logits = model.apply(params, z_k, method=models.vae.Model.decode)
  log_px = jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), -1)
  # The objective's KL: KL(q_0 || N(0, I)) in closed form plus the flow's correction log p(z_0) - log p(z_K) - log det.
  kl_q0 = jnp.sum(-0.5 * (1.0 + log_var - mean ** 2 - jnp.exp(log_var)), -1)
  log_pz0 = jnp.sum(-0.5 * (np.log(2 * np.pi) + z0 ** 2), -1)
  np.testing.assert_allclose(metrics['neg_elbo'], jnp.mean(-log_px + kl_q0 + log_pz0 - log_pz - log_det), rtol=1e-4)
  np.testing.assert_allclose(metrics['log_det'], jnp.mean(log_det), rtol=1e-4, atol=1e-5)
  assert abs(float(metrics['log_det'])) > 1e-3
  # The importance weights' KL is the exact one of the same sample: log q_0(z_0) - log det - log p(z_K).
  terms = vae_iaf.sample_terms(model, config, params, x, key, 1, hp)
  np.testing.assert_allclose(terms['kl'][0], log_q0 - log_det - log_pz, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ['vae_iaf', 'vae_planar'])
def test_flow_kl_estimate_equals_the_kl_in_expectation(name):
  """The training KL (closed-form Gaussian part plus the flow's correction) and the exact single-sample KL have
  the same mean over many posterior samples (to 4 standard errors of their difference)."""
  config, family, params, hp, x = _family_params_x(name)
  params = jax.tree.map(lambda p: 3.0 * p, params)  # away from the initial near-identity flow and N(0, I)
  num = 20000
  terms = jax.jit(lambda key: vae_iaf.sample_terms(family.model, config, params, x[:4], key, num, hp))(
      jax.random.key(5))
  difference = np.asarray(terms['kl_estimate'] - terms['kl'], np.float64)  # num x 4
  assert np.all(np.abs(difference.mean(0)) < 4 * difference.std(0) / np.sqrt(num) + 1e-3), difference.mean(0)
  assert np.all(np.asarray(terms['kl_estimate']).std(0) < np.asarray(terms['kl']).std(0))


@pytest.mark.parametrize('name', ['vae_iaf', 'vae_planar'])
def test_flow_kl_weight_is_traced_and_iwae_bounds_the_elbo(name):
  _, family, params, hp, x = _family_params_x(name)
  loss = jax.jit(family.objective)
  key = jax.random.key(2)
  l1, m1 = loss(params, x, key, hp)
  l2, _ = loss(params, x, key, {**hp, 'kl_weight': jnp.float32(3.0)})
  np.testing.assert_allclose(l2 - l1, 2.0 * m1['kl'], rtol=1e-4)
  assert loss._cache_size() == 1  # a sweep over kl_weight is one program
  _, family_k, params_k, hp_k, _ = _family_params_x(name, num_samples=20)
  _, metrics = jax.jit(family_k.objective)(params_k, x, key, hp_k)
  assert metrics['neg_iwae'] < metrics['neg_elbo']


@pytest.mark.parametrize('name', ['vae_iaf', 'vae_planar'])
def test_flow_vae_trains_and_its_nll_is_below_its_neg_elbo(name, tmp_path):
  summary = engine.train_and_evaluate(small(load_config(name), epochs=3), str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  losses = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses) == 3 and np.isfinite(losses).all() and losses[2] < losses[0], losses
  assert summary['test/nll_k'] == 100 and summary['test/nll'] <= summary['test/neg_elbo'], summary
  assert summary['test/log_det'] != 0.0


@pytest.mark.parametrize('name', ['vae_iaf', 'vae_planar', 'gumbel_vae', 'svae', 'ladder_vae', 'vae_gan'])
def test_the_new_families_configs_are_valid_and_refuse_bad_values(name):
  for arg in (None, 'mnist'):
    config_lib.validate(load_config(name, arg))
  config = load_config(name)
  field = {'vae_iaf': 'vae_iaf.num_flows', 'vae_planar': 'vae_planar.num_flows',
           'gumbel_vae': 'gumbel_vae.num_categories', 'svae': 'model.latent_dim',
           'ladder_vae': 'ladder_vae.level_hidden', 'vae_gan': 'vae_gan.disc_hidden'}[name]
  section, _, key = field.partition('.')
  config[section][key] = () if key.endswith('hidden') else 1 if key != 'num_flows' else 0
  with pytest.raises(config_lib.ConfigError, match=field):
    config_lib.validate(config)
