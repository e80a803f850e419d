"""The study protocol of Locatello et al. 2019 (Challenging Common Assumptions in the Unsupervised Learning of
Disentangled Representations, Table 1 and Appendix B), one config per method:

  python -m aelab.main --config=configs/dlib/base.py:method=beta_vae --sweep=configs/dlib/sweeps.py:method=beta_vae \\
      --workdir=runs/dlib/beta_vae                                          # shapes2d (offline), 300,000 steps
  python -m aelab.main --config=configs/dlib/base.py:method=beta_tcvae,data=dsprites=FILE \\
      --sweep=configs/dlib/sweeps.py:method=beta_tcvae --workdir=runs/dlib/dsprites/beta_tcvae

``arg``: comma-separated ``method=M`` (``beta_vae``, ``annealed_vae``, ``factor_vae``, ``dip_vae_i``,
``dip_vae_ii``, ``beta_tcvae``; default ``beta_vae``), ``data=D`` (a data arg as every config takes it:
``shapes2d`` by default, ``dsprites=FILE``, ``mpi3d=FILE``, ...) and ``steps=N`` (default 300,000).

Encoder: four 4x4 stride-2 convolutions of 32, 32, 64, 64 channels, a 256-unit dense layer, 10 latents
(Gaussian posterior); decoder: its mirror (a 256-unit layer, a 4 x 4 x 64 map, then sub-pixel upsampling,
``aelab.nn.nets.ConvDecoder``, where the paper has transposed convolutions), Bernoulli likelihood,
ReLU. Adam at 1e-4, batch 64, ``steps`` steps: ``train.num_epochs`` is the number of epochs of the
training split that gives at least that many steps (the split's size is known for the sources of
:data:`TRAIN_SIZE` and for shapes2d; other data keep 1 epoch: set ``--config.train.num_epochs``). Each
method's weight is set to the middle of its published grid here; ``configs/dlib/sweeps.py`` sweeps it.
"""
import math

from aelab import config as aelab_config

# method -> (family, its fixed fields); the swept weight of each is in configs/dlib/sweeps.py.
METHODS = {
    'beta_vae': ('vae', {'vae.kl_weight': 4.0}),
    'annealed_vae': ('vae', {'vae.kl_weight': 0.0, 'vae.capacity_weight': 1000.0, 'vae.capacity_max': 25.0,
                             'vae.capacity_steps': 100_000}),
    'factor_vae': ('factor_vae', {'factor_vae.tc_weight': 30.0, 'factor_vae.disc_hidden': (1000,) * 6,
                                  'factor_vae.disc_learning_rate': 1e-4}),
    'dip_vae_i': ('dip_vae', {'dip_vae.dip_type': 'i', 'dip_vae.dip_lambda_od': 5.0, 'dip_vae.dip_lambda_d': 50.0}),
    'dip_vae_ii': ('dip_vae', {'dip_vae.dip_type': 'ii', 'dip_vae.dip_lambda_od': 5.0, 'dip_vae.dip_lambda_d': 5.0}),
    'beta_tcvae': ('beta_tcvae', {'beta_tcvae.tc_weight': 4.0}),
}
STEPS = 300_000
# Images in each benchmark as its publisher ships it (the training split is 1 - data.test_fraction of it).
TRAIN_SIZE = {'dsprites': 737_280, 'shapes3d': 480_000, 'mpi3d': 1_036_800, 'cars3d': 17_568, 'smallnorb': 24_300}


def parse(arg: str | None) -> dict[str, str]:
  """``'method=M,data=D,steps=N'`` -> ``{'method': M, 'data': D, 'steps': N}`` with the defaults filled."""
  out = {'method': 'beta_vae', 'data': 'shapes2d', 'steps': str(STEPS)}
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if key not in out or not value:
      raise ValueError(f'configs/dlib/base.py arg {item!r}: give method=M, data=D or steps=N, comma-separated.')
    out[key] = value
  if out['method'] not in METHODS:
    raise ValueError(f'configs/dlib/base.py method={out["method"]!r}: choose one of {", ".join(METHODS)}.')
  return out


def train_size(config) -> int | None:
  """Examples in the training split of ``config.data``, where known before reading it."""
  if config.data.name == 'shapes2d':
    total = math.prod(config.data.shapes2d.counts)
  else:
    total = TRAIN_SIZE.get(config.data.name)
  return None if total is None else total - round(total * config.data.test_fraction)


def get_config(arg=None):
  args = parse(arg)
  family, fields = METHODS[args['method']]
  config = aelab_config.adapt_to_data(aelab_config.set_data(aelab_config.base(family), args['data']))
  config.data.binarize = 'none'
  config.model.update(net='conv', conv_channels=(32, 32, 64, 64), hidden=(256,), latent_dim=10, activation='relu',
                      likelihood='bernoulli')
  config.optimizer.update(name='adam', learning_rate=1e-4, schedule='constant')
  for field, value in fields.items():
    section, name = field.split('.')
    config[section][name] = value
  size = train_size(config)
  config.train.update(batch_size=64, figures_every=0, num_epochs=math.ceil(int(args['steps']) * 64 / size) if size
                      else 1)
  config.train.checkpoint_every = max(1, config.train.num_epochs // 10)
  config.eval.nll_samples = 1  # the protocol scores the codes, not the likelihood
  return config
