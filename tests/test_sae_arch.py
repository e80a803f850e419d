"""The SAE architectures and training aids of aelab.nn.sparse_coding and aelab.models.sae (Gated, Matryoshka,
p-annealing, the sparsity warm-up, resampling of dead latents, the feature density) and the hierarchical
superposition data with its absorption metric: each against a hand computation on a tiny batch."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aelab import config as config_lib
from aelab import data
from aelab.data import superposition
from aelab.eval import plots
from aelab.models import sae
from aelab.nn import sparse_coding
from aelab.train import engine, sweep
from conftest import load_config, small

TINY = dict(num_features=24, dim=12, probability=1 / 12, num_train=4096, num_test=512, seed=3)


def _tiny(activation: str, epochs: int = 1, **fields):
  config = load_config('sae_topk', 'superposition')
  config.data.superposition.update(TINY)
  config.model.latent_dim = 24
  config.sae.update(**{'activation': activation, 'k': 2, 'aux_k': 8, 'dead_steps': 50, **fields})
  config.train.batch_size = 128
  return small(config, epochs)


# ---- Gated SAE ----


def test_gated_code_shares_the_gate_directions_and_gates_by_the_gate_sign():
  x = jnp.array([[1.0, 2.0]])
  w_gate = jnp.array([[1.0, -1.0, 0.5], [0.0, 1.0, 0.5]])  # D x M
  b_gate = jnp.array([0.0, -2.0, 0.0])  # pi_gate = [1, -1, 1.5]: latent 1 closed
  r_mag = jnp.log(jnp.array([2.0, 3.0, 1.0]))  # W_mag = W_gate * [2, 3, 1]
  b_mag = jnp.array([0.5, 0.0, -2.0])  # pi_mag = [2.5, 3, -0.5]
  z, pi_gate = sparse_coding.gated_code(x, w_gate, b_gate, r_mag, b_mag)
  np.testing.assert_allclose(pi_gate, [[1.0, -1.0, 1.5]])
  np.testing.assert_allclose(z, [[2.5, 0.0, 0.0]])  # open and positive magnitude; closed; open, ReLU'd to 0
  # The magnitude path's weights are the gate's: a gradient on the magnitudes reaches W_gate and r_mag.
  g = jax.grad(lambda w, r: jnp.sum(sparse_coding.gated_code(x, w, b_gate, r, b_mag)[0]), argnums=(0, 1))(w_gate, r_mag)
  np.testing.assert_allclose(g[0], [[2.0, 0.0, 0.0], [4.0, 0.0, 0.0]], rtol=1e-6)  # x_d * exp(r_mag) for latent 0
  np.testing.assert_allclose(g[1], [2.0, 0.0, 0.0], rtol=1e-6)  # d/dr of (x W_gate) exp(r) = 1 * 2


def test_gated_losses_are_the_gate_l1_and_the_frozen_decoder_reconstruction():
  pi_gate = jnp.array([[1.0, -1.0, 2.0]])
  w_dec = jnp.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])  # row norms 5, 1, 2
  b_dec = jnp.array([0.5, 0.0])
  x = jnp.array([[4.0, 9.0]])
  sparsity, aux = sparse_coding.gated_losses(pi_gate, w_dec, b_dec, x)
  assert float(sparsity[0]) == pytest.approx(1 * 5 + 2 * 2)
  # ReLU(pi_gate) W_dec + b_dec = [3, 4] + [0, 4] + [0.5, 0] = [3.5, 8]; (4 - 3.5)^2 + (9 - 8)^2 = 1.25
  assert float(aux[0]) == pytest.approx(1.25)
  g_dec = jax.grad(lambda w, b: jnp.sum(sparse_coding.gated_losses(pi_gate, w, b, x)[1]), argnums=(0, 1))(w_dec, b_dec)
  assert float(jnp.max(jnp.abs(g_dec[0]))) == 0.0 and float(jnp.max(jnp.abs(g_dec[1]))) == 0.0  # frozen decoder


def test_gated_sae_loss_is_the_sum_of_its_terms():
  config = _tiny('gated', l1_weight=0.3)
  model = sae.build(config, 12)
  params = sae.init(model, jax.random.key(0))
  params = {**params, 'r_mag': jnp.full(24, 0.2), 'b_mag': jnp.full(24, 0.05), 'b_enc': jnp.full(24, -0.1)}
  x = jax.random.normal(jax.random.key(1), (8, 12))
  hp = {k: jnp.float32(v) for k, v in dict(l1_weight=0.3, aux_weight=0.0, l0_weight=0.0, sparsity_warmup_steps=0,
                                           p_final=1.0, p_anneal_start=0, p_anneal_steps=0).items()}
  total, (metrics, *_) = jax.jit(sae.make_loss(model))(params, jnp.asarray(x), hp, jnp.zeros(24, bool), jnp.int32(0))
  p = {k: np.asarray(v) for k, v in params.items()}
  x = np.asarray(x)
  pi_gate = (x - p['b_dec']) @ p['W_enc'] + p['b_enc']
  pi_mag = (x - p['b_dec']) @ (p['W_enc'] * np.exp(0.2)) + 0.05
  z = (pi_gate > 0) * np.maximum(pi_mag, 0)
  recon = np.mean(np.sum(np.square(x - z @ p['W_dec'] - p['b_dec']), axis=1))
  l1 = np.mean(np.sum(np.maximum(pi_gate, 0), axis=1))  # unit decoder rows
  gate_aux = np.mean(np.sum(np.square(x - np.maximum(pi_gate, 0) @ p['W_dec'] - p['b_dec']), axis=1))
  np.testing.assert_allclose([metrics['recon'], metrics['l1'], metrics['gate_aux']], [recon, l1, gate_aux], rtol=1e-5)
  assert float(total) == pytest.approx(recon + 0.3 * l1 + gate_aux, rel=1e-5)


# ---- Matryoshka ----


def test_matryoshka_losses_reconstruct_from_each_prefix():
  z = jnp.array([[1.0, 2.0, 3.0]])
  w_dec = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  b_dec = jnp.array([0.0, 1.0])
  x = jnp.array([[4.0, 6.0]])
  losses = sparse_coding.matryoshka_losses(z, w_dec, b_dec, x, (1, 2, 3))
  # prefix 1: [1, 0] + b = [1, 1] -> 9 + 25 = 34; prefix 2: [1, 2] + b = [1, 3] -> 9 + 9 = 18;
  # prefix 3: [4, 5] + b = [4, 6] -> 0.
  np.testing.assert_allclose(losses, [[34.0], [18.0], [0.0]])
  model = sae.build(_tiny('topk', matryoshka_prefixes=(4, 12)), 12)
  assert model.matryoshka_prefixes == (4, 12)
  params = sae.init(model, jax.random.key(0))
  xb = jax.random.normal(jax.random.key(1), (16, 12))
  hp = {k: jnp.float32(0) for k in sae.HYPERPARAMS} | {'p_final': jnp.float32(1)}
  total, (metrics, *_) = jax.jit(sae.make_loss(model))(params, xb, hp, jnp.zeros(24, bool), jnp.int32(0))
  z, w, b = (np.asarray(a) for a in (sae.topk(sae.pre_activations(params, xb), 2), params['W_dec'], params['b_dec']))
  inner = [np.mean(np.sum(np.square(np.asarray(xb) - z[:, :m] @ w[:m] - b), 1)) for m in (4, 12)]
  assert float(metrics['matryoshka']) == pytest.approx(sum(inner), rel=1e-5)
  assert float(total) == pytest.approx(float(metrics['recon']) + sum(inner), rel=1e-5)


def test_matryoshka_prefixes_are_validated():
  config = _tiny('topk', matryoshka_prefixes=(12, 4))
  with pytest.raises(config_lib.ConfigError, match='sae.matryoshka_prefixes'):
    config_lib.validate(config)
  config.sae.matryoshka_prefixes = (4, 24)  # the whole dictionary is implied, not listed
  with pytest.raises(config_lib.ConfigError, match='sae.matryoshka_prefixes'):
    config_lib.validate(config)


# ---- schedules and the L_p penalty ----


def test_p_annealing_and_warm_up_schedules():
  steps = jnp.array([0, 100, 150, 200, 300, 1000])
  p = jax.vmap(lambda s: sparse_coding.annealed_p(s, 0.5, 100, 200))(steps)
  np.testing.assert_allclose(p, [1.0, 1.0, 0.875, 0.75, 0.5, 0.5])
  assert float(sparse_coding.annealed_p(99, 0.5, 100, 0)) == 1.0
  assert float(sparse_coding.annealed_p(100, 0.5, 100, 0)) == 0.5
  factor = jax.vmap(lambda s: sparse_coding.sparsity_warmup(s, 200))(jnp.array([0, 50, 200, 400]))
  np.testing.assert_allclose(factor, [0.0, 0.25, 1.0, 1.0])
  assert float(sparse_coding.sparsity_warmup(0, 0)) == 1.0


def test_lp_penalty_by_hand_with_finite_gradients_at_zero():
  z = jnp.array([[4.0, 0.0, 0.25]])
  norms = jnp.array([1.0, 3.0, 2.0])
  assert float(sparse_coding.lp_penalty(z, norms, 1.0)[0]) == pytest.approx(4 + 0.5)
  assert float(sparse_coding.lp_penalty(z, norms, 0.5)[0]) == pytest.approx(2 + 2 * 0.5)
  g = jax.grad(lambda z: jnp.sum(sparse_coding.lp_penalty(z, norms, 0.5)))(z)
  np.testing.assert_allclose(g, [[0.5 * 4 ** -0.5, 0.0, 2 * 0.5 * 0.25 ** -0.5]], rtol=1e-6)


def test_relu_sae_applies_the_warm_up_and_the_annealed_p_at_the_training_step():
  model = sae.build(_tiny('relu'), 12)
  params = sae.init(model, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (8, 12))
  hp = {k: jnp.float32(v) for k, v in dict(l1_weight=0.2, aux_weight=0.0, l0_weight=0.0, sparsity_warmup_steps=100,
                                           p_final=0.5, p_anneal_start=0, p_anneal_steps=40).items()}
  loss = jax.jit(sae.make_loss(model))
  total, (metrics, *_) = loss(params, x, hp, jnp.zeros(24, bool), jnp.int32(20))
  z = np.maximum(np.asarray(sae.pre_activations(params, x)), 0)
  lp = np.mean(np.sum(z ** 0.75, axis=1))  # p = 1 - 0.5 * 20 / 40
  assert float(metrics['p']) == pytest.approx(0.75) and float(metrics['sparsity_factor']) == pytest.approx(0.2)
  assert float(metrics['l1']) == pytest.approx(lp, rel=1e-5)
  assert float(total) == pytest.approx(float(metrics['recon']) + 0.2 * 0.2 * lp, rel=1e-5)


# ---- resampling ----


def test_resample_dead_gives_the_worst_input_with_the_specified_norms():
  params = sae.init(sae.build(_tiny('topk'), 12), jax.random.key(0))
  params = {**params, 'W_enc': params['W_enc'] * jnp.linspace(1.0, 3.0, 24)[None], 'b_enc': jnp.ones(24),
            'b_dec': jnp.full(12, 0.5)}
  x = jax.random.normal(jax.random.key(1), (32, 12))
  error = jnp.zeros(32).at[7].set(100.0)  # one badly reconstructed input: every draw picks it
  dead = jnp.arange(24) % 3 == 0
  new = jax.jit(sparse_coding.resample_dead)(jax.random.key(2), params, x, error, dead)
  target = (x[7] - 0.5) / jnp.linalg.norm(x[7] - 0.5)  # b_dec = 0.5
  alive_norm = float(jnp.mean(jnp.linalg.norm(params['W_enc'], axis=0)[~dead]))
  np.testing.assert_allclose(new['W_dec'][dead], jnp.broadcast_to(target, (8, 12)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jnp.linalg.norm(new['W_enc'][:, dead], axis=0), 0.2 * alive_norm, rtol=1e-5)
  np.testing.assert_allclose(new['W_enc'][:, dead] / (0.2 * alive_norm), jnp.broadcast_to(target[:, None], (12, 8)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new['b_enc'], np.where(dead, 0.0, 1.0))
  for name in ('W_dec', 'W_enc'):
    np.testing.assert_array_equal(np.asarray(new[name])[..., ~dead] if name == 'W_enc' else new[name][~dead],
                                  np.asarray(params[name])[..., ~dead] if name == 'W_enc' else params[name][~dead])


def test_training_with_resampling_revives_dead_latents_and_resets_their_adam_state():
  config = _tiny('topk', dead_steps=1, resample_every=2, aux_weight=0.0)
  x = jnp.asarray(data.load(config.data).x_train[:128])
  run = engine.make_run(config, (12,))
  init_state, train_step = engine.make_train_step(run, 100)
  state = init_state(jax.random.key(0), x[:1])
  # Latents 0-5 cannot fire.
  state['params']['b_enc'] = state['params']['b_enc'].at[:6].set(-100.0)
  step = jax.jit(train_step)
  state, _ = step(state, x, jax.random.key(1), run.hp)  # step 1: latents that did not fire now count 1
  dead = np.asarray(state['opt_state']['steps_since_fired'] >= 1)
  assert dead[:6].all() and int(state['opt_state']['resampled']) == 0
  state, metrics = step(state, x, jax.random.key(2), run.hp)  # step 2: resampled
  opt = state['opt_state']
  # The resampled rows are unit inputs minus b_dec (cosine 1 with one of the batch); their counters restart.
  params = state['params']
  unit = lambda a: a / jnp.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
  resampled = np.asarray(jnp.max(unit(params['W_dec']) @ unit(x - params['b_dec'][None]).T, axis=1) > 1 - 1e-5)
  assert resampled[:6].all() and not np.any(resampled & ~dead)
  np.testing.assert_allclose(params['b_enc'][resampled], 0.0)
  assert int(opt['resampled']) == resampled.sum() and float(metrics['resampled']) == resampled.sum()
  np.testing.assert_array_equal(np.asarray(opt['steps_since_fired'])[resampled], 0)
  np.testing.assert_allclose(jnp.linalg.norm(params['W_dec'], axis=1), 1.0, rtol=1e-5)
  adam = [s for s in jax.tree.leaves(opt['tx'], is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)]
  assert adam, 'the optimizer has an Adam state'
  for moment in (adam[0].mu, adam[0].nu):
    assert float(jnp.max(jnp.abs(moment['W_dec'][resampled]))) == 0.0
    assert float(jnp.max(jnp.abs(moment['W_enc'][:, resampled]))) == 0.0
    assert float(jnp.max(jnp.abs(moment['W_dec']))) > 0.0  # the others keep theirs


# ---- feature density ----


def test_density_quantiles_on_a_constructed_code():
  # 4 latents over 10 examples: firing 10 (dense), 1, 0 (dead) and 2 times.
  z = np.zeros((10, 4), np.float32)
  z[:, 0], z[0, 1], z[:2, 3] = 1.0, 2.0, 3.0
  freq = sparse_coding.firing_frequencies(jnp.asarray(z))
  np.testing.assert_allclose(freq, [1.0, 0.1, 0.0, 0.2])
  stats = sparse_coding.density_stats(freq)
  logs = np.log10(np.array([1.0, 0.1, 0.0, 0.2]) + 1e-10)
  for q in (10, 25, 50, 75, 90):
    assert float(stats[f'log10_density_q{q}']) == pytest.approx(np.quantile(logs, q / 100), rel=1e-5)
  assert float(stats['log10_density_q50']) == pytest.approx((-1 + np.log10(0.2)) / 2, rel=1e-5)
  assert float(stats['dense_fraction']) == pytest.approx(0.5)  # 1.0 and 0.2 exceed 10%


def test_feature_density_figure_is_drawn_for_sparse_codes(tmp_path):
  z = np.zeros((10, 4), np.float32)
  z[:, 0], z[0, 1] = 1.0, 2.0
  assert plots.is_sparse(z) and not plots.is_sparse(np.ones((10, 4)))
  plots.feature_density(z, str(tmp_path / 'feature_density.png'))
  assert (tmp_path / 'feature_density.png').stat().st_size > 0


# ---- hierarchical superposition and absorption ----


def test_hierarchical_children_fire_only_with_their_parent():
  s = superposition.spec({**TINY, 'hierarchy': 3, 'probability': 0.2, 'child_probability': 0.5})
  on = superposition.active(s, 20_000, np.random.default_rng(0))
  kids = superposition.children(s)
  assert superposition.num_parents(s) == 6 and kids.shape == (6, 3) and kids.max() == 23
  child_on = on[:, kids].any(axis=2)
  assert not np.any(child_on & ~on[:, :6])  # never without the parent
  assert np.all(on[:, kids].sum(axis=2) <= 1)  # one child at a time
  assert abs(child_on.sum() / on[:, :6].sum() - 0.5) < 0.02 and abs(on[:, :6].mean() - 0.2) < 0.01
  corr = superposition.active(superposition.spec({**TINY, 'correlation': 0.5, 'probability': 0.1}), 20_000,
                              np.random.default_rng(0))
  assert abs(corr.mean() - 0.1) < 0.01 and np.corrcoef(corr[:, 0], corr[:, 1])[0, 1] > 0.1


def test_absorption_counts_a_silent_parent_latent_when_a_child_fires():
  parents = np.eye(3)[:1]  # one parent (e0), children e1, e2 (features 1, 2)
  features = np.array([[1, 1, 0], [1, 0, 1], [1, 0, 0], [1, 1, 0]], np.float32)
  learned = np.array([[1.0, 0, 0], [1.0, 1.0, 0], [0, 0, 1.0]])  # latent 0 is the parent's
  codes = np.array([[0, 1, 0], [1, 0, 1], [1, 0, 0], [1, 1, 0]], np.float32)  # silent on 1 of 3 with a child
  out = superposition.absorption(parents, np.array([[1, 2]]), features, codes, learned)
  assert out['absorption'] == pytest.approx(1 / 3) and out['parent_alone_miss'] == 0.0
  assert out['parent_mmcs'] == pytest.approx(1.0)


def test_hierarchical_run_reports_absorption_and_density_in_the_summary(tmp_path):
  config = _tiny('gated', l1_weight=0.1)
  config.data.superposition.update(hierarchy=3, probability=0.2)
  config.train.figures_every = 1
  # The gate's L1 weight, p-annealing and the warm-up are traced: one program.
  runs = sweep.zipped(sweep.axis('sae.l1_weight', [0.03, 0.3]), sweep.axis('sae.p_final', [1.0, 0.5]),
                      sweep.axis('sae.sparsity_warmup_steps', [0, 10]))
  logs = []
  summaries = sweep.run_sweep(config, runs, str(tmp_path), log=logs.append)
  assert any('1 groups' in line for line in logs)
  assert (tmp_path / sweep.run_name(runs[0]) / 'figures' / 'feature_density.png').exists()
  s = [summaries[sweep.run_name(r)] for r in runs]
  for summary in s:
    assert 0 <= summary['test/absorption'] <= 1 and -1 <= summary['test/parent_mmcs'] <= 1
    q = [summary[f'test/log10_density_q{p}'] for p in (10, 25, 50, 75, 90)]
    assert q == sorted(q) and -10 <= q[0] and q[-1] <= 0 and 0 <= summary['test/dense_fraction'] <= 1
  assert s[1]['test/l0'] < s[0]['test/l0']
