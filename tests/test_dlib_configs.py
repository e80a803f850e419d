"""configs/dlib: the protocol of Locatello et al. 2019 validates for each method, and each method's sweep is
its published grid (Table 2) x seeds in one compiled program."""
import pytest

from aelab import config as config_lib
from aelab import models
from aelab.train import sweep

PUBLISHED = {  # method -> (family, [(field, values)]) as Locatello et al. 2019 list them
    'beta_vae': ('vae', [('vae.kl_weight', [1, 2, 4, 6, 8, 16])]),
    'annealed_vae': ('vae', [('vae.capacity_max', [5, 10, 25, 50, 75, 100])]),
    'factor_vae': ('factor_vae', [('factor_vae.tc_weight', [10, 20, 30, 40, 50, 100])]),
    'dip_vae_i': ('dip_vae', [('dip_vae.dip_lambda_od', [1, 2, 5, 10, 20, 50]),
                              ('dip_vae.dip_lambda_d', [10, 20, 50, 100, 200, 500])]),
    'dip_vae_ii': ('dip_vae', [('dip_vae.dip_lambda_od', [1, 2, 5, 10, 20, 50]),
                               ('dip_vae.dip_lambda_d', [1, 2, 5, 10, 20, 50])]),
    'beta_tcvae': ('beta_tcvae', [('beta_tcvae.tc_weight', [1, 2, 4, 6, 8, 10])]),
}


def _field(config, dotted):
  section, name = dotted.split('.')
  return config[section][name]


@pytest.mark.parametrize('method', PUBLISHED)
def test_method_config_validates_and_its_sweep_is_the_published_grid(method):
  config = config_lib.load(f'configs/dlib/base.py:method={method}')
  config_lib.validate(config)
  family, grid = PUBLISHED[method]
  assert config.model.name == family
  assert (config.model.net, tuple(config.model.conv_channels), tuple(config.model.hidden)) == ('conv', (32, 32, 64, 64),
                                                                                                (256,))
  assert (config.model.latent_dim, config.model.likelihood, config.data.binarize) == (10, 'bernoulli', 'none')
  assert (config.optimizer.name, config.optimizer.learning_rate, config.train.batch_size) == ('adam', 1e-4, 64)
  # shapes2d's default grid (737,280 images, 80 % to train): the fewest epochs of at least 300,000 steps
  train = 737_280 - round(737_280 * config.data.test_fraction)
  assert (config.train.num_epochs - 1) * train < 300_000 * 64 <= config.train.num_epochs * train
  runs = sweep.load(f'configs/dlib/sweeps.py:method={method},seeds=3')
  assert len(runs) == 6 * 3
  for field, values in grid:
    assert sorted({r[field] for r in runs}) == values
  members = sweep.members(config, runs)
  assert len(sweep.group(members)) == 1  # the whole population is one program
  for member in members:
    config_lib.validate(member.config)
  if method == 'annealed_vae':  # recon + gamma |KL - C|: no separate KL term (dlib's AnnealedVAE)
    assert (config.vae.capacity_weight, config.vae.kl_weight) == (1000.0, 0.0)
  if method.startswith('dip_vae'):
    assert config.dip_vae.dip_type == method.rsplit('_', 1)[1]
  assert set(models.hyperparams(config)) >= {f.split('.')[1] for f, _ in grid}


def test_steps_and_bad_args():
  config = config_lib.load('configs/dlib/base.py:method=beta_vae,steps=1000')
  assert config.train.num_epochs == 1
  with pytest.raises(Exception, match='choose one of'):
    config_lib.load('configs/dlib/base.py:method=vae_gan')
  with pytest.raises(Exception, match='method=M and seeds=N'):
    sweep.load('configs/dlib/sweeps.py:seed=3')


def test_study_tables_and_docs_markers(tmp_path):
  """experiments/dlib_protocol.py: UDR selection picks the weight of highest mean UDR, and the docs table
  replaces only what lies between the markers."""
  import sys  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  sys.path.insert(0, 'experiments')
  import dlib_protocol  # noqa: PLC0415
  rng = np.random.default_rng(0)
  result = {m: rng.uniform(size=(3, 2)).tolist() for m in dlib_protocol.METRICS}
  result['udr'] = [[0.1, 0.2], [0.9, 0.8], [0.3, 0.3]]
  result.update(weights=[1.0, 4.0, 16.0], field='vae.kl_weight')
  table, rho = dlib_protocol.tables({'beta_vae': result}, {})
  assert rho.shape == (len(dlib_protocol.METRICS),) * 2
  values = np.array([[1.0, 2, 3, 4], [4, 3, 2, 1], [1, 3, 2, 4], [5, 5, 5, 5]])
  rho = dlib_protocol.rank_correlation(values)
  np.testing.assert_allclose(rho[:3, :3], [[1, -1, 0.8], [-1, 1, -0.8], [0.8, -0.8, 1]])
  assert np.all(np.isnan(rho[3]))  # a constant metric has no rank correlation
  assert dlib_protocol.selection({'beta_vae': result})[0]['UDR picks'] == 4.0
  page = tmp_path / 'page.md'
  page.write_text('# Title\n\nkept\n')
  dlib_protocol.write_docs(str(page), 'python x', 'TABLE-1', 60.0)
  dlib_protocol.write_docs(str(page), 'python y', 'TABLE-2', 120.0)
  text = page.read_text()
  assert text.startswith('# Title\n\nkept\n') and 'TABLE-2' in text and 'TABLE-1' not in text
  assert text.count(dlib_protocol.MARKERS[0]) == 1 and '`python y` (2 minutes' in text


def test_reduced_annealing_and_reused_populations(tmp_path):
  """experiments/dlib_protocol.py --reduced ramps AnnealedVAE's capacity over the published third of the steps;
  --reuse adds an earlier invocation's other methods, and refuses one of other protocol arguments."""
  import json  # noqa: PLC0415
  import sys  # noqa: PLC0415
  import types  # noqa: PLC0415
  sys.path.insert(0, 'experiments')
  import dlib_protocol  # noqa: PLC0415
  args = types.SimpleNamespace(data='shapes2d', reduced=True, steps=700, seeds=3, udr_points=1000)
  assert dlib_protocol.method_config('annealed_vae', args).vae.capacity_steps == 233  # 700 x 100,000 / 300,000
  assert dlib_protocol.method_config('beta_vae', args).vae.capacity_steps == 100_000  # off (gamma 0): untouched
  earlier = tmp_path / 'dlib_protocol.json'
  earlier.write_text(json.dumps({'args': vars(args), 'methods': {'beta_vae': {'mig': [[0.1]]}, 'dip_vae_i': {}}}))
  assert list(dlib_protocol.reused(str(earlier), args, ['dip_vae_i'])) == ['beta_vae']
  with pytest.raises(SystemExit, match=r"steps=700 \(now 300\)"):
    dlib_protocol.reused(str(earlier), types.SimpleNamespace(**{**vars(args), 'steps': 300}), ['dip_vae_i'])
