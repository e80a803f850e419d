"""Disentanglement metrics on constructed codes whose answer is known (aelab/disentanglement.py), the
shapes2d generator, and the disentangling VAE families' objectives."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import config as config_lib
from aelab import data, models
from aelab.eval import disentanglement
from aelab.data import shapes2d
from aelab.models import beta_tcvae, dip_vae, factor_vae

GRID = shapes2d.Shapes2D((3, 3, 4, 5, 5), 16)


@pytest.fixture(scope='module')
def codes():
  """Train / test factors and four codes of them: the factors, a rotation, one ignoring factor 0, noise."""
  rng = np.random.default_rng(0)
  f, ft = GRID.sample_factors(1500, rng), GRID.sample_factors(600, rng)
  rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))[0]
  return f, ft, {'factors': (f * 1.0, ft * 1.0), 'rotated': (f @ rotation, ft @ rotation),
                 'ignores_shape': (f[:, 1:] * 1.0, ft[:, 1:] * 1.0),
                 'noise': (rng.normal(size=(1500, 5)), rng.normal(size=(600, 5)))}


def test_mig(codes):
  f, _, c = codes
  scores = {k: disentanglement.mig(z, f) for k, (z, _) in c.items()}
  assert scores['factors'] > 0.97  # 1 up to the finite-sample MI of independent factors
  assert scores['rotated'] < 0.3 and scores['noise'] < 0.02
  assert 0.75 < scores['ignores_shape'] < 0.82  # 4 of 5 factors perfect, shape 0


def test_modularity(codes):
  f, _, c = codes
  scores = {k: disentanglement.modularity(z, f) for k, (z, _) in c.items()}
  assert scores['factors'] > 0.99 and scores['ignores_shape'] > 0.99  # each dimension about one factor
  assert scores['rotated'] < scores['factors'] - 0.02


def test_sap(codes):
  f, ft, c = codes
  scores = {k: disentanglement.sap(z, f, zt, ft) for k, (z, zt) in c.items()}
  assert scores['factors'] > 0.25
  assert scores['rotated'] < scores['factors'] / 2 and scores['noise'] < 0.03


def test_dci(codes):
  f, ft, c = codes
  scores = {k: disentanglement.dci(z, f, zt, ft, model='forest') for k, (z, zt) in c.items()}
  assert scores['factors'] == pytest.approx({'disentanglement': 1.0, 'completeness': 1.0, 'informativeness': 1.0},
                                            abs=1e-3)
  assert scores['rotated']['disentanglement'] < 0.4 and scores['rotated']['completeness'] < 0.4
  assert scores['noise']['disentanglement'] < 0.02
  # shape at chance (1/3), the other four factors perfect:
  assert scores['ignores_shape']['informativeness'] == pytest.approx((4 + 1 / 3) / 5, abs=0.05)
  assert scores['noise']['informativeness'] < 0.35


def test_dci_gbt_on_factors(codes):
  f, ft, _ = codes
  d = disentanglement.dci(f[:150] * 1.0, f[:150], ft[:100] * 1.0, ft[:100], model='gbt')
  assert d['disentanglement'] > 0.99 and d['completeness'] > 0.99


def test_intervention_scores():
  rng = np.random.default_rng(0)
  lookup = {row.tobytes(): fac for row, fac in zip(GRID.images(GRID.all_factors()), GRID.all_factors())}
  perfect = lambda x: np.stack([lookup[r.tobytes()] for r in x]) * 1.0  # noqa: E731  (the factors, by image)
  noise = lambda x: np.random.default_rng(len(x)).normal(size=(len(x), 5))  # noqa: E731
  beta_perfect = disentanglement.beta_vae_score(perfect, GRID, rng, num_train=200, num_eval=100)
  beta_noise = disentanglement.beta_vae_score(noise, GRID, rng, num_train=200, num_eval=100)
  assert beta_perfect['eval_accuracy'] > 0.9 and beta_noise['eval_accuracy'] < 0.4
  factor_perfect = disentanglement.factor_vae_score(perfect, GRID, rng, num_train=200, num_eval=100)
  factor_noise = disentanglement.factor_vae_score(noise, GRID, rng, num_train=200, num_eval=100)
  assert factor_perfect['eval_accuracy'] > 0.75 and factor_noise['eval_accuracy'] < 0.45


def test_evaluate_scores_the_codes_of_the_images_of_the_factors():
  """evaluate's path factors -> images -> encode -> MIG: the factors looked up by image score MIG near 1 on
  x and y (about 0.66 in all: at 16 pixels 900 factor vectors draw only 416 distinct images, so shape,
  scale and orientation are partly ambiguous); the same codes with their rows out of order (codes of
  other images than the factors') score near 0."""
  lookup = {row.tobytes(): fac for row, fac in zip(GRID.images(GRID.all_factors()), GRID.all_factors())}
  perfect = lambda x: np.stack([lookup[r.tobytes()] for r in x]) * 1.0  # noqa: E731
  shuffled = lambda x: perfect(x)[np.random.default_rng(0).permutation(len(x))]  # noqa: E731
  kw = dict(num_train=600, num_test=200, score_points=(20, 10), dci_model='forest')
  assert disentanglement.evaluate(perfect, GRID, **kw)['test/mig'] > 0.6
  assert disentanglement.evaluate(shuffled, GRID, **kw)['test/mig'] < 0.05


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match='N x Z'):
    disentanglement.mig(np.zeros((5, 2)), np.zeros((4, 2), int))
  with pytest.raises(ValueError, match='integer'):
    disentanglement.mig(np.zeros((5, 2)), np.zeros((5, 2)))


def test_shapes2d_grid_and_dataset():
  x = GRID.images(GRID.all_factors())
  assert x.shape == (GRID.num_images, 256) and set(np.unique(x)) == {0.0, 1.0}
  assert np.all(x.sum(1) > 0)  # every sprite is drawn inside the image
  # larger scale, more pixels; the images of different x positions differ
  f = np.array([[0, 0, 0, 2, 2], [0, 2, 0, 2, 2], [0, 0, 0, 3, 2]])
  small, large, shifted = GRID.images(f)
  assert large.sum() > small.sum() and not np.array_equal(small, shifted)
  cfg = config_lib.base().data
  cfg.name = 'shapes2d'
  cfg.shapes2d.update(counts=(3, 3, 4, 5, 5), size=16)
  ds = data.load(cfg)
  assert ds.shape == (16, 16, 1) and len(ds.x_train) + len(ds.x_test) == GRID.num_images
  ft = ds.extras['factors_train']
  np.testing.assert_array_equal(GRID.images(ft[:20]), ds.x_train[:20])  # the factors are those of the images
  np.testing.assert_array_equal(ds.y_train, ft[:, 0])
  with pytest.raises(data.DataError, match='shapes2d'):
    cfg.shapes2d.counts = (4, 3, 4, 5, 5)
    data.load(cfg)


def _config(name):
  config = config_lib.base(name)
  config.model.update(hidden=(16,), latent_dim=3, likelihood='bernoulli')
  if 'factor_vae' in config:
    config.factor_vae.disc_hidden = (8,)
  return config


def test_total_correlation_of_independent_and_dependent_codes():
  key = jax.random.key(0)
  mean = jax.random.normal(key, (256, 2))
  log_var = jnp.full((256, 2), -6.0)
  tc = jax.jit(beta_tcvae.total_correlation)
  correlated = jnp.concatenate([mean[:, :1], mean[:, :1]], axis=1)
  assert tc(correlated, correlated, log_var) > tc(mean, mean, log_var) + 1.0


def test_dip_penalty_zero_at_identity_covariance():
  penalty = jax.jit(dip_vae.dip_penalty)
  assert float(penalty(jnp.eye(2), 1.0, 1.0)) == 0.0
  cov = jnp.array([[2.0, 0.5], [0.5, 1.0]])
  assert float(penalty(cov, 3.0, 2.0)) == pytest.approx(3.0 * 2 * 0.25 + 2.0 * 1.0)
  x_BxZ = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
  np.testing.assert_allclose(dip_vae.covariance(x_BxZ), np.cov(np.asarray(x_BxZ).T, bias=True), atol=1e-6)


def test_permute_dims_keeps_marginals():
  z = jnp.arange(20.0).reshape(10, 2)
  perm = jax.jit(factor_vae.permute_dims)(jax.random.key(0), z)
  np.testing.assert_array_equal(np.sort(perm, axis=0), z)
  assert not np.array_equal(perm, z)


@pytest.mark.parametrize('name,weights', [('beta_tcvae', {'tc_weight': 1.0}),
                                          ('dip_vae', {'dip_lambda_od': 0.0, 'dip_lambda_d': 0.0})])
def test_zero_regularizer_is_the_vae(name, weights):
  """With its weight at the neutral value the family's loss is the VAE's (same key, same sample)."""
  x = (jax.random.uniform(jax.random.key(1), (8, 12)) > 0.5).astype(jnp.float32)
  fam, vae_fam = models.get(_config(name), 12), models.get(_config('vae'), 12)
  params = vae_fam.init(jax.random.key(0), x)
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in models.hyperparams(_config(name)).items()}
  hp.update({k: jnp.asarray(v) for k, v in weights.items()})
  vae_hp = {k: jnp.asarray(v, jnp.float32) for k, v in models.hyperparams(_config('vae')).items()}
  loss, _ = jax.jit(fam.objective)(params, x, jax.random.key(2), hp)
  vae_loss, _ = jax.jit(vae_fam.objective)(params, x, jax.random.key(2), vae_hp)
  assert float(loss) == pytest.approx(float(vae_loss), rel=1e-5)


def test_capacity_objective():
  config = _config('vae')
  config.vae.update(capacity_weight=10.0, capacity_max=5.0)
  fam = models.get(config, 12)
  x = (jax.random.uniform(jax.random.key(1), (8, 12)) > 0.5).astype(jnp.float32)
  params = fam.init(jax.random.key(0), x)
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in models.hyperparams(config).items()}
  loss, m = jax.jit(fam.objective)(params, x, jax.random.key(2), {**hp, 'capacity': jnp.asarray(2.0)})
  assert float(loss) == pytest.approx(float(m['recon'] + 10.0 * abs(m['kl'] - 2.0)), rel=1e-5)


def test_run_on_shapes2d_writes_the_metrics(tmp_path):
  from aelab.train import engine  # noqa: PLC0415
  config = config_lib.load('configs/beta_tcvae.py:shapes2d')
  config.data.shapes2d.update(counts=(3, 2, 4, 4, 4), size=16)
  config.model.hidden = (32,)
  config.train.update(num_epochs=1, figures_every=0)
  config.eval.update(disent_points=200, score_points=(20, 10), dci_model='forest')
  summary = engine.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
  for key in ('mig', 'sap', 'dci_disentanglement', 'dci_completeness', 'dci_informativeness', 'modularity',
              'beta_vae_score', 'factor_vae_score', 'irs'):
    assert 0.0 <= summary[f'test/{key}'] <= 1.0, key
  for key in disentanglement.UNSUPERVISED:  # the dlib-style unsupervised scores are >= 0
    assert summary[f'test/{key}'] >= -1e-9, key
