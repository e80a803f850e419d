"""The base experiment config, the ``arg`` that picks a dataset, and validation of every field.

``configs/*.py`` start from :func:`base` and change what their experiment needs; ``aelab.main``
calls :func:`validate` before any data is loaded, so a bad value fails in seconds with a message.
"""
import importlib.util
import math
import os
from types import ModuleType

import ml_collections
from ml_collections import config_dict

from aelab.errors import ConfigError  # noqa: F401  (aelab.config.ConfigError, as before)
from aelab.data import sources
from aelab.nn import corruption, nets

from aelab import models
from aelab.models import common, sae, vqvae

BINARIZE = ('none', 'static', 'dynamic')
OPTIMIZERS = ('adam', 'adamw', 'sgd', 'adadelta')
NETS = ('mlp', 'conv')
PRIORS = ('gaussian', 'mixture')
SCHEDULES = ('constant', 'cosine', 'warmup_cosine')
VAES = ('vae', 'beta_tcvae', 'dip_vae', 'factor_vae')  # Gaussian posterior families (normalized likelihood)

# Fields that change only what a run writes or how fast, never its trained parameters or its per-epoch
# metrics: a workdir may be resumed with other values of these (``workdir.check_same_run``). Every other
# field makes another run. ``train.num_epochs`` may be raised (training continues), not lowered.
OUTPUT_ONLY_FIELDS = frozenset({
    'train.figures_every', 'train.num_figure_images', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.compilation_cache', 'train.compilation_cache_dir', 'eval.final_metrics', 'eval.nll_samples',
    'eval.nll_batch_size', 'eval.nll_chunk_size', 'eval.projection', 'data.tfds.data_dir',
    'disent.eval_points', 'disent.score_points', 'disent.dci_model', 'data.stream_chunk', 'data.stream_workers',
    'log.writers'})


def base() -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults: a small MSE autoencoder on scikit-learn ``digits``."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = sources.config_defaults()  # the shared fields and each source's section (aelab/data/sources)
  c.model = dict(name='ae', hidden=(256,), latent_dim=32, activation='relu', code_activation='identity',
                 likelihood='mse', output_activation='sigmoid', likelihood_std=1.0, tied=False, kl_weight=1.0,
                 net='mlp', conv_channels=(32, 64), num_samples=1, free_bits=0.0, kl_warmup_steps=0,
                 prior='gaussian', sae_activation='topk', capacity_weight=0.0, capacity_max=25.0,
                 capacity_steps=100_000, code_layout='vectors', code_dim=8, codebook_size=128,  # code_*: vqvae
                 commitment_weight=0.25, codebook_ema=0.99, dead_code_steps=100, dtype='float32')
  c.sae = dict(k=4, aux_k=32, dead_steps=500, aux_weight=1 / 32, l1_weight=0.0, l0_weight=0.0, bandwidth=1e-3,
               threshold_init=1e-3, unit_norm_decoder=True, bias_init='geometric_median')
  c.disent = dict(tc_weight=6.0, dip_type='ii', dip_lambda_od=1.0, dip_lambda_d=1.0, disc_hidden=(1000,) * 6,
                  disc_learning_rate=1e-4, eval_points=10_000, score_points=(10_000, 5_000), dci_model='gbt')
  c.aae = dict(disc_hidden=(256, 256), disc_learning_rate=1e-4, gen_learning_rate=1e-4, adversarial_weight=1.0,
               mixture_components=10, mixture_radius=4.0, mixture_std=0.5)
  c.corruption = dict(name='none', std=0.5, rate=0.25, clip=True)
  c.penalty = dict(name='none', weight=0.0, target=0.05)
  c.optimizer = dict(name='adam', learning_rate=1e-3, schedule='constant', warmup_steps=0, momentum=0.9,
                     weight_decay=1e-4)
  c.train = dict(num_epochs=30, batch_size=64, eval_batch_size=1000, figures_every=10, num_figure_images=8,
                 checkpoint_every=5, keep_checkpoints=2, compilation_cache=True,
                 compilation_cache_dir=config_dict.placeholder(str))
  c.eval = dict(nll_samples=5000, nll_batch_size=50, nll_chunk_size=200, final_metrics=True, projection='pca')
  c.log = dict(writers='jsonl,tensorboard')  # metric writers, comma-separated: aelab/train/writers.py
  return ml_collections.ConfigDict(c)


def set_data(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies a config ``arg`` that picks the dataset and returns ``config``.

  ``None`` or ``'digits'``: scikit-learn digits. ``'NAME=PATH'`` for a source that reads a path
  (``idx=DIR``, ``npz=FILE``, ``csv=FILE``, ``images=DIR``, or a source module's dotted path,
  ``my_lab.my_source=FILE``); any other name (``'mnist'``, ``'fashion_mnist'``, ...) is a
  tensorflow-datasets name. A user's source module with a section adds it to ``config.data``.
  Raises ConfigError for a path missing or given where the source reads none.
  """
  arg = arg or 'digits'
  name, _, path = arg.partition('=')
  module = sources.module(name)
  if module.PATH and not path:
    raise ConfigError(f'Config arg {arg!r} needs a path, e.g. "{name}=path/to/data" ({module.PATH}).')
  if path and not module.PATH:
    raise ConfigError(f'Config arg {arg!r}: data.name={name} reads no path; only sources with a path (e.g. '
                      'idx, npz, csv, images) take "=PATH".')
  config.data.name = name
  if path:
    config.data.path = path
  if module.SECTION and module.SECTION not in config.data:
    config.data[module.SECTION] = {k: d for k, (d, _) in module.CONFIG.items()}
  return config


def adapt_to_data(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` adapted by its data source's ``adapt`` (``aelab.data.sources``): csv gives tabular data an
  identity output and an MSE / Gaussian likelihood; shapes2d the setting of Locatello et al. 2019; other
  sources leave it unchanged."""
  return sources.module(config.data.name).adapt(config)


def _choice(value, choices, field: str):
  if value not in choices:
    raise ConfigError(f'{field}={value!r} is not valid; choose one of {tuple(choices)}.')


def _check(ok: bool, message: str):
  if not ok:
    raise ConfigError(message)


def _in_unit_interval(value, field: str, closed: bool = True):
  ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
  _check(ok and math.isfinite(value), f'{field}={value} must lie in {"[0, 1]" if closed else "(0, 1)"}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field's type, name and range. Raises ConfigError naming the field and what is allowed."""
  _validate_types(config)
  _validate_data(config.data)
  _validate_model(config)
  _choice(config.corruption.name, corruption.NAMES, 'corruption.name')
  _check(config.corruption.std >= 0, f'corruption.std={config.corruption.std} must be >= 0.')
  _in_unit_interval(config.corruption.rate, 'corruption.rate')
  _choice(config.penalty.name, common.PENALTIES, 'penalty.name')
  _check(config.penalty.weight >= 0, f'penalty.weight={config.penalty.weight} must be >= 0.')
  _in_unit_interval(config.penalty.target, 'penalty.target (sparsity_target rho)', closed=False)
  if config.penalty.name == 'kl_sparsity':
    _check(config.model.name == 'ae' and config.model.code_activation == 'sigmoid',
           'penalty.name=kl_sparsity needs a code in (0, 1): set model.name=ae and model.code_activation=sigmoid.')
  if config.penalty.name == 'contractive':
    _check(config.model.name == 'ae', 'penalty.name=contractive is defined for a deterministic encoder: set '
           'model.name=ae (configs/cae.py).')
  _validate_optimizer(config.optimizer)
  _validate_train(config.train)
  _validate_generative(config)
  _validate_vq(config.model)


def _kind(default) -> tuple[tuple[type, ...], str]:
  """The types a field with this default in :func:`base` accepts, and their name for a message."""
  if default is None:  # a placeholder: an optional path or directory
    return (str, type(None)), 'a string or None'
  if isinstance(default, bool):
    return (bool,), 'True or False'
  if isinstance(default, int):
    return (int,), 'an integer'
  if isinstance(default, float):
    return (int, float), 'a finite number'
  return (type(default),), f'a {type(default).__name__}'


def _validate_types(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict | None = None,
                    prefix: str = '') -> None:
  """Raises ConfigError for a field of :func:`base` whose value has another type (None included; a bool
  is no number) or is a NaN or infinite number. Fields that base() lacks are left to their users."""
  defaults = base() if defaults is None else defaults
  for name, default in defaults.items():
    value, field = config.get(name), f'{prefix}{name}'
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise ConfigError(f'{field} must be a section of fields like {sorted(default.keys())}, got {value!r}.')
      _validate_types(value, default, f'{field}.')
      continue
    types, wanted = _kind(default)
    bad_bool = isinstance(value, bool) and bool not in types
    if not isinstance(value, types) or bad_bool or (isinstance(value, float) and not math.isfinite(value)):
      raise ConfigError(f'{field}={value!r} must be {wanted} (like its default, {default!r}).')
    if isinstance(value, int) and not -2 ** 31 <= value < 2 ** 31:  # seeds, sizes and counts are int32
      raise ConfigError(f'{field}={value} is out of range: give a value below 2**31.')


def _validate_data(d):
  name = d.name
  _check(isinstance(name, str) and name != '', 'data.name must be a dataset name, e.g. digits or mnist.')
  module = sources.module(name)
  if module.PATH:
    _check(bool(d.path), f'data.name={name} needs data.path ({module.PATH}).')
  _in_unit_interval(d.test_fraction, 'data.test_fraction', closed=False)
  _choice(d.binarize, BINARIZE, 'data.binarize')
  _in_unit_interval(d.binarize_threshold, 'data.binarize_threshold')
  _check(d.max_train_examples >= 0 and d.max_test_examples >= 0, 'data.max_*_examples must be >= 0.')
  _check(d.stream_above_mb >= 0, f'data.stream_above_mb={d.stream_above_mb} must be >= 0 (0: stream only with '
         'data.stream=True).')
  _check(d.stream_chunk >= 1 and d.stream_workers >= 1,
         f'data.stream_chunk={d.stream_chunk} and data.stream_workers={d.stream_workers} must be >= 1.')
  module.validate(d)


def _validate_model(config):
  m = config.model
  _choice(m.name, models.available(), 'model.name')
  _check(m.latent_dim >= 1, f'model.latent_dim={m.latent_dim} must be a positive integer.')
  _check(all(isinstance(w, int) and w >= 1 for w in m.hidden),
         f'model.hidden={m.hidden} must be a tuple of positive integers, e.g. "(512, 128)" or "()".')
  for field in ('activation', 'code_activation', 'output_activation'):
    _choice(m[field], nets.ACTIVATIONS, f'model.{field}')
  _choice(m.likelihood, common.LIKELIHOODS, 'model.likelihood')
  if m.name in VAES:
    _choice(m.likelihood, ('bernoulli', 'gaussian'), 'model.likelihood (a VAE needs a normalized likelihood)')
  _check(m.likelihood_std > 0, f'model.likelihood_std={m.likelihood_std} must be > 0.')
  _check(m.kl_weight >= 0, f'model.kl_weight={m.kl_weight} must be >= 0.')
  _check(m.capacity_weight >= 0 and m.capacity_max >= 0 and m.capacity_steps >= 0,
         'model.capacity_weight (gamma, 0: off), model.capacity_max (nats) and model.capacity_steps must be >= 0.')
  _check(m.capacity_weight == 0 or m.name == 'vae', 'model.capacity_weight > 0 (annealed capacity) is an option '
         f'of model.name=vae, not {m.name}: set --config.model.name=vae or model.capacity_weight=0.')
  _validate_disent(config.disent)
  _choice(m.dtype, common.DTYPES, 'model.dtype (of the nets\' computation; parameters stay float32)')
  _check(m.dtype == 'float32' or m.name != 'sae', 'model.dtype=bfloat16 is not implemented for model.name=sae '
         '(its encoder and decoder are plain float32 matrices): set --config.model.dtype=float32.')
  if m.name == 'sae':
    _validate_sae(config)


def _validate_sae(config):
  m, s = config.model, config.sae
  _choice(m.sae_activation, sae.ACTIVATIONS, 'model.sae_activation')
  _choice(s.bias_init, sae.BIAS_INITS, 'sae.bias_init')
  for field in ('k', 'aux_k'):
    _check(isinstance(s[field], int) and 1 <= s[field] <= m.latent_dim,
           f'sae.{field}={s[field]} must be an integer in [1, model.latent_dim={m.latent_dim}].')
  _check(s.dead_steps >= 1, f'sae.dead_steps={s.dead_steps} (steps without firing before a latent counts as dead) '
         'must be >= 1.')
  for field in ('aux_weight', 'l1_weight', 'l0_weight'):
    _check(s[field] >= 0 and math.isfinite(s[field]), f'sae.{field}={s[field]} must be a number >= 0.')
  for field in ('bandwidth', 'threshold_init'):
    _check(s[field] > 0, f'sae.{field}={s[field]} (JumpReLU) must be > 0.')


def _validate_disent(d):
  _check(d.tc_weight >= 0, f'disent.tc_weight={d.tc_weight} (beta-TCVAE beta, FactorVAE gamma) must be >= 0.')
  _choice(d.dip_type, ('i', 'ii'), 'disent.dip_type (DIP-VAE-I or -II)')
  _check(d.dip_lambda_od >= 0 and d.dip_lambda_d >= 0, 'disent.dip_lambda_od and disent.dip_lambda_d must be >= 0.')
  _check(all(isinstance(w, int) and w >= 1 for w in d.disc_hidden),
         f'disent.disc_hidden={d.disc_hidden} must be a tuple of positive integers.')
  _check(d.disc_learning_rate > 0, f'disent.disc_learning_rate={d.disc_learning_rate} must be > 0.')
  _check(d.eval_points >= 2 and len(d.score_points) == 2 and min(d.score_points) >= 1,
         'disent.eval_points must be >= 2 and disent.score_points two positive counts (train, eval).')
  _choice(d.dci_model, ('gbt', 'forest'), 'disent.dci_model')


def _validate_generative(config):
  m, a, e = config.model, config.aae, config.eval
  _choice(m.net, NETS, 'model.net')
  _check(len(m.conv_channels) >= 1 and all(isinstance(c, int) and c >= 1 for c in m.conv_channels),
         f'model.conv_channels={m.conv_channels} must be a non-empty tuple of positive integers, e.g. "(32, 64)".')
  _check(not (m.net == 'conv' and m.tied), 'model.tied=True needs model.net=mlp (a conv decoder has no '
         'transposed dense kernels to share).')
  _check(isinstance(m.num_samples, int) and m.num_samples >= 1,
         f'model.num_samples={m.num_samples} (IWAE k) must be an integer >= 1; 1 is the ELBO.')
  _check(m.free_bits >= 0, f'model.free_bits={m.free_bits} (nats per latent dimension) must be >= 0.')
  _check(not (m.free_bits > 0 and m.num_samples > 1), 'model.free_bits applies to the ELBO\'s KL term; '
         'the IWAE objective (model.num_samples > 1) has none: set one of them back (free_bits=0 or num_samples=1).')
  _check(m.kl_warmup_steps >= 0, f'model.kl_warmup_steps={m.kl_warmup_steps} must be >= 0 (0: no warm-up).')
  _choice(m.prior, PRIORS, 'model.prior')
  if m.name == 'aae' and m.prior == 'mixture':
    _check(m.latent_dim == 2, f'model.prior=mixture is a mixture of Gaussians on a circle in 2-D, but '
           f'model.latent_dim={m.latent_dim}: set --config.model.latent_dim=2 or model.prior=gaussian.')
  _check(all(isinstance(w, int) and w >= 1 for w in a.disc_hidden),
         f'aae.disc_hidden={a.disc_hidden} must be a tuple of positive integers.')
  for field in ('disc_learning_rate', 'gen_learning_rate', 'mixture_radius', 'mixture_std'):
    _check(a[field] > 0 and math.isfinite(a[field]), f'aae.{field}={a[field]} must be a positive number.')
  _check(a.adversarial_weight >= 0, f'aae.adversarial_weight={a.adversarial_weight} must be >= 0.')
  _check(a.mixture_components >= 1, f'aae.mixture_components={a.mixture_components} must be >= 1.')
  _check(isinstance(e.nll_samples, int) and e.nll_samples >= 1,
         f'eval.nll_samples={e.nll_samples} (k of the importance-sampled NLL) must be an integer >= 1.')
  _check(e.nll_batch_size >= 1 and e.nll_chunk_size >= 1, 'eval.nll_batch_size and eval.nll_chunk_size must be >= 1.')
  _choice(e.projection, ('pca', 'tsne'), 'eval.projection (of codes with more than 2 dimensions)')


def _validate_vq(m):
  _choice(m.code_layout, vqvae.LAYOUTS, 'model.code_layout')
  _check(isinstance(m.code_dim, int) and m.code_dim >= 1, f'model.code_dim={m.code_dim} must be an integer >= 1.')
  _check(isinstance(m.codebook_size, int) and m.codebook_size >= 2,
         f'model.codebook_size={m.codebook_size} must be an integer >= 2.')
  _check(m.commitment_weight >= 0, f'model.commitment_weight={m.commitment_weight} (beta) must be >= 0.')
  _check(0.0 <= m.codebook_ema < 1.0, f'model.codebook_ema={m.codebook_ema} (EMA decay) must lie in [0, 1); '
         '0 learns the codebook by gradient instead.')
  _check(isinstance(m.dead_code_steps, int) and m.dead_code_steps >= 0,
         f'model.dead_code_steps={m.dead_code_steps} must be an integer >= 0 (0: no restarts).')
  if m.name == 'vqvae':
    try:
      vqvae.check_layout(m)
    except ValueError as e:
      raise ConfigError(str(e)) from None


def from_dict(values: dict) -> ml_collections.ConfigDict:
  """The config of a workdir's ``config.json``: :func:`base` updated with ``values`` (JSON lists back to
  tuples), e.g. for ``python -m aelab.evaluate --workdir=...``."""
  def as_tuples(v):
    if isinstance(v, dict):
      return {k: as_tuples(x) for k, x in v.items()}
    return tuple(as_tuples(x) for x in v) if isinstance(v, list) else v

  if not isinstance(values, dict):
    raise ConfigError(f'A config must be a JSON object of sections and fields, got {type(values).__name__}.')
  config = base()
  for section, fields in as_tuples(values).items():
    if isinstance(fields, dict) and isinstance(config.get(section), ml_collections.ConfigDict):
      for name, value in fields.items():
        _set(config[section], name, value, f'{section}.{name}')
    else:
      _set(config, section, fields, section)
  return config


def _set(node: ml_collections.ConfigDict, name: str, value, field: str) -> None:
  """``node[name] = value``; raises ConfigError naming ``field`` when the value's type does not fit."""
  try:
    node[name] = value
  except (TypeError, ValueError, AttributeError):
    default = node.get(name)
    if isinstance(default, ml_collections.ConfigDict):
      raise ConfigError(f'{field}={value!r} must be a section of fields like {sorted(default.keys())}.') from None
    raise ConfigError(f'{field}={value!r} must be {_kind(default)[1]} (like its default, {default!r}).') from None


def _validate_optimizer(o):
  _choice(o.name, OPTIMIZERS, 'optimizer.name')
  _choice(o.schedule, SCHEDULES, 'optimizer.schedule')
  _check(o.learning_rate > 0 and math.isfinite(o.learning_rate),
         f'optimizer.learning_rate={o.learning_rate} must be a positive number.')
  _check(o.warmup_steps >= 0, f'optimizer.warmup_steps={o.warmup_steps} must be >= 0.')
  _in_unit_interval(o.momentum, 'optimizer.momentum')
  _check(o.weight_decay >= 0, f'optimizer.weight_decay={o.weight_decay} must be >= 0.')


def _validate_train(t):
  _check(t.num_epochs >= 1, f'train.num_epochs={t.num_epochs} must be >= 1.')
  _check(t.batch_size >= 1, f'train.batch_size={t.batch_size} must be >= 1.')
  _check(t.eval_batch_size >= 1, f'train.eval_batch_size={t.eval_batch_size} must be >= 1.')
  _check(t.figures_every >= 0, f'train.figures_every={t.figures_every} must be >= 0 (0: no figures).')
  _check(t.keep_checkpoints >= 1, f'train.keep_checkpoints={t.keep_checkpoints} must be >= 1.')
  _check(t.checkpoint_every >= 1, f'train.checkpoint_every={t.checkpoint_every} must be >= 1 (epochs between '
         'checkpoints; the last epoch is always checkpointed).')


def load_module(path: str, what: str = 'config') -> ModuleType:
  """Executes the Python file at ``path`` as a module (a config or sweep file) and returns it.
  Raises ConfigError when the file does not exist or fails to run (a syntax error, an exception)."""
  if not os.path.isfile(path):
    raise ConfigError(f'{what.capitalize()} file {path!r} not found.')
  name = f'{what}_{os.path.splitext(os.path.basename(path))[0]}'
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # any error in the user's file is reported as that file's
    raise ConfigError(f'{what.capitalize()} file {path} failed to load: {describe(e)}; fix the file.') from e
  return module


def describe(error: BaseException) -> str:
  """One line for an exception raised by a user's file: ``SyntaxError at line 3: '[' was never closed``,
  ``ValueError: ...`` (the first line of its message)."""
  if isinstance(error, SyntaxError):
    return f'{type(error).__name__} at line {error.lineno}: {error.msg}'
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__


def call(module: ModuleType, function: str, arg: str | None, path: str, what: str = 'config'):
  """``module.function(arg)``; raises ConfigError when the file lacks it or it raises (a ConfigError it
  raises passes unchanged)."""
  if not callable(getattr(module, function, None)):
    raise ConfigError(f'{what.capitalize()} file {path} defines no {function}(arg=None).')
  try:
    return getattr(module, function)(arg)
  except ConfigError:
    raise
  except Exception as e:  # the user's function: its error is reported as theirs
    raise ConfigError(f'{function}({arg!r}) of {what} file {path} raised {describe(e)}') from e


def load(spec: str) -> ml_collections.ConfigDict:
  """The config of ``path/to/config.py[:arg]``, as ``--config=path/to/config.py:arg`` loads it: that
  file's ``get_config(arg)`` (``None`` without ``:arg``). Raises ConfigError for a missing file, one
  that fails to run, or a get_config that raises."""
  path, _, arg = spec.partition(':')
  return call(load_module(path, 'config'), 'get_config', arg or None, path)


def default_cache_dir() -> str:
  """Where JAX's persistent compilation cache goes by default: ``$XDG_CACHE_HOME/aelab/jax`` (or
  ``~/.cache/aelab/jax``)."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'aelab', 'jax')


def schema() -> dict[str, dict[str, tuple]]:
  """Every section of :func:`base` as ``{section: {field: (default, meaning)}}``; a nested section is
  named by its dotted path (``'data.superposition'``), top-level fields are in section ``''``. The docs'
  configs page is generated from it (docs/hooks/configs_page.py). Meanings are empty here."""
  sections: dict[str, dict[str, tuple]] = {}

  def walk(node: ml_collections.ConfigDict, name: str):
    fields = sections.setdefault(name, {})
    for key, value in node.items():
      if isinstance(value, ml_collections.ConfigDict):
        walk(value, f'{name}.{key}' if name else key)
      else:
        fields[key] = (value, '')

  walk(base(), '')
  return {name: fields for name, fields in sections.items() if fields}
