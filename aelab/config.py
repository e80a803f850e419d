"""The base experiment config (every field with its default and meaning), the ``arg`` that picks a dataset,
and validation of every field.

``configs/*.py`` start from :func:`base` (``base('vae')``: with the sections of that model family) and
change what their experiment needs; ``aelab.main`` calls :func:`validate` before any data is loaded, so a
bad value fails in seconds with a message. The base holds only what every run has (seed, data, model name
and nets, corruption, penalty, optimizer, train, eval); a model family declares its own section
(``config.vae``, ``config.sae``, ...: ``aelab/models/family.py``), which :func:`with_family` adds. This
module imports no family and names none.
"""
import importlib.util
import math
import os
from types import ModuleType
from typing import Any

import ml_collections
from ml_collections import config_dict

from aelab.errors import ConfigError, check, check_choice  # noqa: F401  (aelab.config.ConfigError, as before)
from aelab.data import sources
from aelab.nn import corruption, nets

from aelab import models
from aelab.models import common

BINARIZE = ('none', 'static', 'dynamic')
OPTIMIZERS = ('adam', 'adamw', 'sgd', 'adadelta')
NETS = ('mlp', 'conv')
SCHEDULES = ('constant', 'cosine', 'warmup_cosine')

# Fields that change only what a run writes or how fast, never its trained parameters or its per-epoch
# metrics: a workdir may be resumed with other values of these (``workdir.check_same_run``). Every other
# field makes another run. ``train.num_epochs`` may be raised (training continues), not lowered.
OUTPUT_ONLY_FIELDS = frozenset({
    'train.figures_every', 'train.num_figure_images', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.compilation_cache', 'train.compilation_cache_dir', 'eval.final_metrics', 'eval.nll_samples',
    'eval.nll_batch_size', 'eval.nll_chunk_size', 'eval.projection', 'data.tfds.data_dir',
    'eval.disent_points', 'eval.score_points', 'eval.dci_model', 'data.stream_chunk', 'data.stream_workers',
    'log.writers'})

# The base config as data: {section: {field: (default, meaning)}}; a field outside any section (seed) is
# (default, meaning) at the top. A default of None is an optional string (a path), unset. config.data is
# the data sources' (aelab.data.sources: the shared fields and each source's section).
BASE: dict[str, Any] = {
    'seed': (0, 'root of every random key (initialization, data order, corruption, sampling)'),
    'model': {
        'name': ('ae', "the model family: a module of aelab/models ('ae', 'vae', ...) or the dotted path of "
                 "your own (my_lab.my_family)"),
        'hidden': ((256,), 'widths of the encoder (the decoder mirrors them), e.g. (512, 128) or ()'),
        'latent_dim': (32, 'dimension of the code z'),
        'activation': ('relu', 'activation of the hidden layers'),
        'code_activation': ('identity', 'activation of a deterministic code (sigmoid for kl_sparsity)'),
        'likelihood': ('mse', "p(x|z): 'bernoulli' (logits), 'gaussian' (fixed std) or 'mse' (per pixel)"),
        'output_activation': ('sigmoid', 'activation of the decoder output (identity for Bernoulli logits)'),
        'likelihood_std': (1.0, 'std of the Gaussian likelihood, in data units'),
        'tied': (False, "the decoder uses the encoder's transposed kernels (MLP only)"),
        'net': ('mlp', "encoder and decoder: 'mlp' or 'conv'"),
        'conv_channels': ((32, 64), 'channels of the conv layers (stride 2 each), model.net=conv'),
        'dtype': ('float32', "dtype of the nets' computation: 'float32' or 'bfloat16' (parameters stay float32)"),
    },
    'corruption': {
        'name': ('none', "corruption of the input: 'none', 'gaussian', 'masking' or 'salt_and_pepper'"),
        'std': (0.5, 'std of Gaussian corruption, in data units'),
        'rate': (0.25, 'fraction of inputs masked or salted, in [0, 1]'),
        'clip': (True, 'clip corrupted inputs to [0, 1]'),
    },
    'penalty': {
        'name': ('none', "code penalty: 'none', 'l1', 'kl_sparsity' or 'contractive' (those the family defines)"),
        'weight': (0.0, 'weight of the penalty in the loss'),
        'target': (0.05, 'sparsity target rho of kl_sparsity, in (0, 1)'),
    },
    'optimizer': {
        'name': ('adam', "'adam', 'adamw', 'sgd' or 'adadelta'"),
        'learning_rate': (1e-3, 'peak learning rate'),
        'schedule': ('constant', "learning-rate schedule: 'constant', 'cosine' or 'warmup_cosine'"),
        'warmup_steps': (0, 'steps of linear warm-up of warmup_cosine'),
        'momentum': (0.9, 'momentum of sgd, in [0, 1]'),
        'weight_decay': (1e-4, 'decoupled weight decay of adamw'),
    },
    'train': {
        'num_epochs': (30, 'epochs of training (may be raised to continue a finished run)'),
        'batch_size': (64, 'examples per step'),
        'eval_batch_size': (1000, 'examples per batch of evaluation'),
        'models_at_once': (0, "models of a sweep's group computed at once on one device (0: all, vmapped); fewer "
                           'bound the working memory of a step to theirs (jax.lax.map over the others)'),
        'figures_every': (10, 'epochs between figures (0: none)'),
        'num_figure_images': (8, 'images per reconstruction figure'),
        'checkpoint_every': (5, 'epochs between checkpoints (the last epoch is always checkpointed)'),
        'keep_checkpoints': (2, 'checkpoints kept'),
        'compilation_cache': (True, "use JAX's persistent compilation cache"),
        'compilation_cache_dir': (None, 'its directory (None: ~/.cache/aelab/jax)'),
    },
    'eval': {
        'nll_samples': (5000, 'importance samples k of test/nll (Burda et al. 2016)'),
        'nll_batch_size': (50, 'examples per batch of test/nll'),
        'nll_chunk_size': (200, 'importance samples per chunk of test/nll'),
        'final_metrics': (True, 'compute the end-of-training metrics (test/nll, test/active_units, ...)'),
        'projection': ('pca', "projection of codes above 2-D in figures: 'pca' or 'tsne'"),
        'disent_points': (10_000, 'codes encoded for MIG and DCI (data with ground-truth factors)'),
        'score_points': ((10_000, 5_000), 'points (train, eval) of the beta-VAE and FactorVAE scores'),
        'dci_model': ('gbt', "DCI's regressor: 'gbt' (as disentanglement_lib) or 'forest' (faster)"),
    },
    'log': {
        'writers': ('jsonl,tensorboard', "metric writers, comma-separated: 'jsonl', 'tensorboard', 'mlflow', "
                    "'wandb' (aelab/train/writers.py)"),
    },
}


def _defaults(section: dict) -> dict:
  """``{field: default}`` of a section as data (sub-sections nested; None becomes an optional string)."""
  return {k: _defaults(v) if isinstance(v, dict) else
          (config_dict.placeholder(str) if v[0] is None else v[0]) for k, v in section.items()}


def base(name: str = 'ae') -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults: a small MSE autoencoder on scikit-learn ``digits``, with
  ``model.name = name`` and that family's sections (:func:`with_family`). Raises ConfigError for an
  unknown family."""
  defaults = _defaults(BASE)
  config = ml_collections.ConfigDict({'seed': defaults.pop('seed'), 'data': sources.config_defaults(), **defaults})
  return with_family(config, name)


def with_family(config: ml_collections.ConfigDict, name: str | None = None) -> ml_collections.ConfigDict:
  """Sets ``model.name = name`` (when given) and adds the config sections of that family and of those it
  builds on, with their defaults, where ``config`` lacks them; fields it has keep their values. Returns
  ``config`` (changed in place, also when locked). Raises ConfigError for an unknown family."""
  with config.unlocked():
    if name is not None:
      config.model.name = name
    for section, fields in models.sections(config.model.name).items():
      if section not in config:
        config[section] = _defaults(fields)
  return config


def schema() -> dict[str, dict[str, tuple[Any, str]]]:
  """``{section: {field: (default, meaning)}}`` of the base config (``data.*`` from ``sources.schema``) and
  of every family in aelab; sections are dotted (``'data.superposition'``) and the top-level fields
  (``seed``) are section ``''``. The docs' configs page is generated from it."""
  found: dict[str, dict[str, tuple[Any, str]]] = {}

  def add(prefix: str, section: dict):
    found.setdefault(prefix, {})
    for k, v in section.items():
      if isinstance(v, dict):
        add(f'{prefix}.{k}' if prefix else k, v)
      else:
        found[prefix][k] = v

  add('', BASE)
  found.update(sources.schema())
  for name in models.available():
    for section, fields in models.sections(name).items():
      add(section, fields)
  return {k: v for k, v in found.items() if v}


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
  identity output and an MSE likelihood, a Gaussian one for a family that needs a normalized likelihood (its
  ``LIKELIHOODS``: the VAEs); shapes2d and dsprites the setting of Locatello et al. 2019; shapes3d, mpi3d and
  cars3d no binarization; other sources leave it unchanged."""
  config = sources.module(config.data.name).adapt(config)
  if config.model.likelihood == 'mse' and 'mse' not in models.likelihoods(config.model.name):
    config.model.likelihood = 'gaussian'  # MSE's density: a Gaussian of fixed std (model.likelihood_std)
  return config


_choice, _check = check_choice, check


def _in_unit_interval(value, field: str, closed: bool = True):
  ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
  _check(ok and math.isfinite(value), f'{field}={value} must lie in {"[0, 1]" if closed else "(0, 1)"}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field's type, name and range, those of the family's sections by the family's own
  ``validate``. Raises ConfigError naming the field and what is allowed."""
  _validate_types(config, base())  # the base's fields first: model.name a string
  models.check_sections(config)  # an unknown family, a module without the contract, a missing section
  _validate_types(config)  # and the family's sections
  _validate_data(config.data)
  _validate_model(config.model)
  _validate_code_penalty(config)
  _validate_optimizer(config.optimizer)
  _validate_train(config.train)
  _validate_eval(config.eval)
  models.validate(config)


def _validate_code_penalty(config):
  c, p = config.corruption, config.penalty
  _choice(c.name, corruption.NAMES, 'corruption.name')
  _check(c.std >= 0, f'corruption.std={c.std} must be >= 0.')
  _in_unit_interval(c.rate, 'corruption.rate')
  _choice(p.name, common.PENALTIES, 'penalty.name')
  defined = models.penalties(config.model.name)
  _check(p.name in defined, f'penalty.name={p.name} is not defined for model.name={config.model.name} (it defines '
         f'{defined}): set another penalty.name, or a model.name whose family defines it (its PENALTIES).')
  _check(p.weight >= 0, f'penalty.weight={p.weight} must be >= 0.')
  _in_unit_interval(p.target, 'penalty.target (sparsity_target rho)', closed=False)


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
  defaults = base(config.model.name) if defaults is None else defaults
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


def _validate_model(m):
  _check(m.latent_dim >= 1, f'model.latent_dim={m.latent_dim} must be a positive integer.')
  _check(all(isinstance(w, int) and w >= 1 for w in m.hidden),
         f'model.hidden={m.hidden} must be a tuple of positive integers, e.g. "(512, 128)" or "()".')
  for field in ('activation', 'code_activation', 'output_activation'):
    _choice(m[field], nets.ACTIVATIONS, f'model.{field}')
  _choice(m.likelihood, common.LIKELIHOODS, 'model.likelihood')
  _check(m.likelihood_std > 0, f'model.likelihood_std={m.likelihood_std} must be > 0.')
  _choice(m.dtype, common.DTYPES, 'model.dtype (of the nets\' computation; parameters stay float32)')
  _choice(m.net, NETS, 'model.net')
  _check(len(m.conv_channels) >= 1 and all(isinstance(c, int) and c >= 1 for c in m.conv_channels),
         f'model.conv_channels={m.conv_channels} must be a non-empty tuple of positive integers, e.g. "(32, 64)".')
  _check(not (m.net == 'conv' and m.tied), 'model.tied=True needs model.net=mlp (a conv decoder has no '
         'transposed dense kernels to share).')


def _validate_eval(e):
  _check(isinstance(e.nll_samples, int) and e.nll_samples >= 1,
         f'eval.nll_samples={e.nll_samples} (k of the importance-sampled NLL) must be an integer >= 1.')
  _check(e.nll_batch_size >= 1 and e.nll_chunk_size >= 1, 'eval.nll_batch_size and eval.nll_chunk_size must be >= 1.')
  _choice(e.projection, ('pca', 'tsne'), 'eval.projection (of codes with more than 2 dimensions)')
  _check(e.disent_points >= 2 and len(e.score_points) == 2 and min(e.score_points) >= 1,
         'eval.disent_points must be >= 2 and eval.score_points two positive counts (train, eval).')
  _choice(e.dci_model, ('gbt', 'forest'), 'eval.dci_model')


def from_dict(values: dict) -> ml_collections.ConfigDict:
  """The config of a workdir's ``config.json``: :func:`base` of its ``model.name`` (with the family's
  sections) updated with ``values`` (JSON lists back to tuples), e.g. for ``python -m aelab.evaluate --workdir=...``."""
  def as_tuples(v):
    if isinstance(v, dict):
      return {k: as_tuples(x) for k, x in v.items()}
    return tuple(as_tuples(x) for x in v) if isinstance(v, list) else v

  if not isinstance(values, dict):
    raise ConfigError(f'A config must be a JSON object of sections and fields, got {type(values).__name__}.')
  name = values.get('model', {}).get('name') if isinstance(values.get('model'), dict) else None
  config = base(name if isinstance(name, str) else 'ae')  # a name of another type: _set's error below
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
  _check(t.models_at_once >= 0, f'train.models_at_once={t.models_at_once} must be >= 0 (0: all at once).')
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

