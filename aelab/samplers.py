"""Samplers of a trained run: ways to draw new examples from an autoencoder, fitted after training.

  x_NxD = samplers.draw(aelab.load(workdir), dataset, 'gmm', num=64, seed=0, workdir=workdir)

- ``prior``: the family's own prior, decoded (a VAE's N(0, I), the AAE's ``aae.prior``): ``Family.sample``.
- ``normal``: codes ``z ~ N(0, I)`` of the code's width, decoded, for any family (the baseline a
  Gaussian mixture is compared with for a plain AE or an RAE, Ghosh et al. 2020, Sec. 5).
- ``gmm``: a Gaussian mixture (``n_components``, full covariances, scikit-learn's ``GaussianMixture``)
  fitted to the training codes, decoded (Ghosh et al. 2020, "ex-post density estimation").
- ``two_stage``: a second-stage VAE (aelab's ``vae`` family trained by ``engine.fit``, MLP
  ``two_stage_hidden``, Gaussian likelihood of std ``two_stage_std``, as many latents as the code has) on the
  standardized training codes; its prior samples, decoded twice (Dai & Wipf 2019, Diagnosing and Enhancing
  VAE Models, Sec. 4).
- ``pixelcnn``: a gated PixelCNN (``aelab.nn.pixelcnn``) trained on a VQ-VAE's maps of training code
  indices; its samples' codebook vectors, decoded (van den Oord et al. 2017, Sec. 3.3 and 4.1).
- ``uniform_codes``: a VQ-VAE's code indices drawn uniformly, decoded (the baseline of ``pixelcnn``).

A conditional family (``cvae``) decodes every sampler's codes given class labels (``draw(..., labels=...)``,
by default every class in turn: :func:`labels_for`); ``gmm`` and ``two_stage`` are fitted to the codes of the
training examples given their labels.

Fitted samplers are saved in ``<workdir>/samplers/<name>/`` (``state.msgpack``: arrays;
``sampler.json``: the options that shaped it and the checkpoint's epoch); a later call with the same
options and checkpoint reuses them. Samples are likelihood means, clipped to [0, 1] for images.
"""
import dataclasses
import json
import os
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aelab import api, config as config_lib, data, models
from aelab.errors import ConfigError, DataError
from aelab.eval import classifier, samples
from aelab.models import vqvae
from aelab.nn import fit, pixelcnn
from aelab.train import engine, figures

SAMPLERS = ('prior', 'normal', 'gmm', 'two_stage', 'pixelcnn', 'uniform_codes')
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Options:
  """What shapes the fitted samplers (fields by sampler prefix; ``fit_seed`` seeds every fit)."""
  n_components: int = 10  # gmm: mixture components
  two_stage_hidden: tuple[int, ...] = (256, 256)  # two_stage: the second VAE's MLP widths
  two_stage_std: float = 0.1  # two_stage: std of its Gaussian likelihood, in standardized code units
  two_stage_epochs: int = 50
  pixelcnn_channels: int = 64
  pixelcnn_layers: int = 5
  pixelcnn_epochs: int = 20
  fit_seed: int = 0


FIELDS = {'gmm': ('n_components',), 'two_stage': ('two_stage_hidden', 'two_stage_std', 'two_stage_epochs'),
          'pixelcnn': ('pixelcnn_channels', 'pixelcnn_layers', 'pixelcnn_epochs')}


def is_vqvae(trained: api.Trained) -> bool:
  """Whether the run's family is the VQ-VAE or builds on it (its codes are codebook indices)."""
  return 'vqvae' in models.builds_on(trained.config.model.name)


def check_applies(trained: api.Trained, name: str) -> None:
  """Raises ConfigError with a one-line message when sampler ``name`` is unknown or does not fit the run."""
  family = trained.config.model.name
  if name not in SAMPLERS:
    raise ConfigError(f'--sampler={name} is unknown; choose one of {", ".join(SAMPLERS)}.')
  if name == 'prior' and not trained.has_prior:
    raise ConfigError(f'model.name={family} has no prior to sample: use --sampler=gmm (or two_stage'
                      f'{", pixelcnn" if is_vqvae(trained) else ""}).')
  if name in ('pixelcnn', 'uniform_codes') and not is_vqvae(trained):
    raise ConfigError(f'--sampler={name} draws the code indices of a VQ-VAE, but model.name={family}: use '
                      '--sampler=gmm (or prior, two_stage).')


def applicable(trained: api.Trained) -> list[str]:
  """The samplers that fit this run, in :data:`SAMPLERS` order."""
  out = []
  for name in SAMPLERS:
    try:
      check_applies(trained, name)
      out.append(name)
    except ConfigError:
      pass
  return out


# ---- fitting: each returns a state, a nested dict of numpy arrays ----


def train_codes(trained: api.Trained, dataset: data.Dataset) -> np.ndarray:
  """The codes ``N x Z`` of the training split (a VAE's posterior means; a conditional family's given the
  training labels)."""
  return trained.encode(dataset.x_train, dataset.y_train if trained.num_classes else None)


def fit_gmm(codes_NxZ: np.ndarray, options: Options) -> dict[str, np.ndarray]:
  """``{'weights' K, 'means' K x Z, 'chol' K x Z x Z}``: a full-covariance mixture fitted by EM
  (scikit-learn, ``random_state=fit_seed``); ``chol`` are the Cholesky factors of the covariances."""
  from sklearn.mixture import GaussianMixture  # noqa: PLC0415  (scikit-learn imports slowly)
  if options.n_components > len(codes_NxZ):
    raise ConfigError(f'--n_components={options.n_components} exceeds the {len(codes_NxZ)} training codes: lower it.')
  gm = GaussianMixture(options.n_components, covariance_type='full', random_state=options.fit_seed).fit(codes_NxZ)
  return {'weights': gm.weights_, 'means': gm.means_, 'chol': np.linalg.cholesky(gm.covariances_)}


def sample_gmm(state: dict, key: jax.Array, num: int) -> jax.Array:
  """``num x Z`` draws of the mixture: a component by its weight, then ``mean + chol @ eps``."""
  component_key, noise_key = jax.random.split(key)
  k = jax.random.categorical(component_key, jnp.log(jnp.asarray(state['weights'], jnp.float32)), shape=(num,))
  means, chol = jnp.asarray(state['means'], jnp.float32), jnp.asarray(state['chol'], jnp.float32)
  eps = jax.random.normal(noise_key, (num, means.shape[1]))
  return means[k] + jnp.einsum('nij,nj->ni', chol[k], eps)


def two_stage_config(options: Options, code_dim: int, num_codes: int) -> Any:
  """The second stage: aelab's ``vae`` with ``code_dim`` latents on standardized codes (Dai & Wipf 2019)."""
  config = config_lib.base('vae')
  config.seed = options.fit_seed
  config.model.update(net='mlp', hidden=tuple(options.two_stage_hidden), latent_dim=code_dim, activation='relu',
                      likelihood='gaussian', likelihood_std=options.two_stage_std, output_activation='identity')
  config.train.update(num_epochs=options.two_stage_epochs, batch_size=min(128, num_codes))
  return config


def fit_two_stage(codes_NxZ: np.ndarray, options: Options, log: Log) -> dict:
  """``{'mean' Z, 'std' Z, 'params'}``: the code statistics and the second VAE's parameters."""
  mean, std = codes_NxZ.mean(0), codes_NxZ.std(0) + 1e-6
  z = ((codes_NxZ - mean) / std).astype(np.float32)
  held = z[:min(500, len(z))]
  codes = data.Dataset(z, None, held, None, (z.shape[1],), 'tabular', 'codes')
  config = two_stage_config(options, z.shape[1], len(z))
  _, params, history = engine.fit(config, codes, log)
  log(f'two_stage: second VAE trained, train/loss {history[-1]["train/loss"]:.4g}')
  return {'mean': mean, 'std': std, 'params': flax.serialization.to_state_dict(params)}


def code_grid(trained: api.Trained) -> tuple[int, int]:
  """The ``(H, W)`` map of a VQ-VAE's code vectors (``(1, N)`` for the ``vectors`` layout)."""
  grid = tuple(trained.family.model.grid())
  return grid if len(grid) == 2 else (1, grid[0])


def code_maps(trained: api.Trained, dataset: data.Dataset) -> tuple[np.ndarray, tuple[int, int]]:
  """The training split's VQ-VAE code indices ``N x H x W`` and the map's ``(H, W)`` (``(1, N)`` for the
  ``vectors`` layout)."""
  grid = code_grid(trained)
  encode = jax.jit(lambda x: vqvae.make_encode_indices(trained.family.model)(trained.params, x))
  indices = fit.apply_in_batches(encode, dataset.x_train)
  return indices.reshape(len(indices), *grid), grid


def _pixelcnn(trained: api.Trained, options: Options) -> pixelcnn.PixelCNN:
  return pixelcnn.PixelCNN(trained.config.vqvae.codebook_size, options.pixelcnn_channels, options.pixelcnn_layers)


def fit_pixelcnn(trained: api.Trained, dataset: data.Dataset, options: Options, log: Log) -> dict:
  """``{'grid' (2,), 'params'}``: a gated PixelCNN fitted by maximum likelihood (cross-entropy, nats per
  code) to the training split's code maps, Adam 1e-3, batches of 64."""
  maps, grid = code_maps(trained, dataset)
  net = _pixelcnn(trained, options)
  params = net.init(jax.random.key(options.fit_seed), jnp.zeros((1, *grid), jnp.int32))

  def loss(p, batch, key):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(net.apply(p, batch[0]), batch[0]))

  params, history = fit.fit_arrays(loss, params, (maps,), jax.random.key(options.fit_seed + 1),
                                   options.pixelcnn_epochs, min(64, len(maps)), 1e-3)
  log(f'pixelcnn: prior trained, cross-entropy {history[-1]:.4g} nats per code')
  return {'grid': np.asarray(grid), 'params': flax.serialization.to_state_dict(params)}


# ---- drawing ----


def _decode_codes(trained: api.Trained, z_NxZ: jax.Array, y_N: np.ndarray | None) -> np.ndarray:
  return trained.decode(np.asarray(z_NxZ, np.float32), y_N)


def _codebook_vectors(trained: api.Trained, indices: jax.Array) -> jax.Array:
  codebook = trained.params['params']['codebook']
  return jnp.asarray(codebook)[indices].reshape(indices.shape[0], -1)


def _draw(trained: api.Trained, name: str, state: dict | None, seed: int, num: int, options: Options,
          code_dim: int, y_N: np.ndarray | None = None) -> np.ndarray:
  """``num x D`` decoded samples of sampler ``name`` with its fitted ``state`` (a conditional family's given
  the labels ``y_N``)."""
  key = jax.random.key(seed)
  if name == 'prior':
    return trained.sample(num, seed, y_N)
  if name == 'normal':
    return _decode_codes(trained, jax.random.normal(key, (num, code_dim)), y_N)
  if name == 'gmm':
    return _decode_codes(trained, sample_gmm(state, key, num), y_N)
  if name == 'two_stage':
    second = models.get(two_stage_config(options, code_dim, 128), (code_dim,))
    u = jax.random.normal(key, (num, code_dim))
    return _decode_codes(trained, second.decode(state['params'], u) * state['std'][None] + state['mean'][None], y_N)
  if name == 'uniform_codes':
    indices = jax.random.randint(key, (num, *code_grid(trained)), 0, trained.config.vqvae.codebook_size)
  else:
    grid = tuple(int(g) for g in state['grid'])
    indices = jax.jit(pixelcnn.sample, static_argnums=(0, 3, 4))(_pixelcnn(trained, options), state['params'], key,
                                                                 num, grid)
  return _decode_codes(trained, _codebook_vectors(trained, indices), None)


def _fitted(trained: api.Trained, dataset: data.Dataset, name: str, workdir: str | None, options: Options,
            log: Log) -> dict | None:
  """The fitted state of sampler ``name``: read from ``<workdir>/samplers/<name>/`` when it was fitted with
  the same options on the same checkpoint epoch, else fitted (and saved there when ``workdir`` is given)."""
  if name not in FIELDS:
    return None
  meta = {'sampler': name, 'epoch': trained.epoch, 'fit_seed': options.fit_seed,
          **{f: list(v) if isinstance(v, tuple) else v for f in FIELDS[name] for v in [getattr(options, f)]}}
  path = os.path.join(workdir, 'samplers', name) if workdir else None
  if path and os.path.exists(os.path.join(path, 'sampler.json')):
    with open(os.path.join(path, 'sampler.json')) as f:
      if json.load(f) == meta:
        with open(os.path.join(path, 'state.msgpack'), 'rb') as g:
          return flax.serialization.msgpack_restore(g.read())
  log(f'{name}: fitting on the training split')
  if name == 'pixelcnn':
    state = fit_pixelcnn(trained, dataset, options, log)
  else:
    codes = train_codes(trained, dataset)
    state = fit_gmm(codes, options) if name == 'gmm' else fit_two_stage(codes, options, log)
  if path:
    _save(path, state, meta)
  return state


def _save(path: str, state: dict, meta: dict) -> None:
  """Writes ``state.msgpack``, then ``sampler.json`` (whose match marks a reusable fit)."""
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'state.msgpack'), 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, state)))
  with open(os.path.join(path, 'sampler.json'), 'w') as f:
    json.dump(meta, f, indent=1)


def labels_for(trained: api.Trained, num: int, labels: Any = None) -> np.ndarray | None:
  """The labels ``num`` samples of a conditional family are drawn with: ``labels`` (``[num]`` class ids, or one
  int for all), by default every class in turn (``figures.sample_labels``: one figure row per label); None for
  another family. Raises DataError as ``Trained.labels``."""
  if labels is None and trained.num_classes:
    return np.asarray(figures.sample_labels(num, trained.num_classes))
  y = trained.labels(labels, num, 'sample')
  return None if y is None else np.asarray(y)


def draw(trained: api.Trained, dataset: data.Dataset, name: str, num: int, seed: int = 0, workdir: str | None = None,
         options: Options = Options(), log: Log = print, labels: Any = None) -> np.ndarray:
  """``num x D`` float32 samples of sampler ``name`` (:data:`SAMPLERS`) of a trained run, likelihood means
  (clipped to [0, 1] for images); ``seed`` draws them, ``options.fit_seed`` fits the sampler; a conditional
  family's are decoded given ``labels`` (:func:`labels_for`: by default every class in turn). Raises
  ConfigError for an unknown sampler or one that does not fit the family (one line naming what to use),
  DataError for labels that do not fit."""
  check_applies(trained, name)
  if num < 1:
    raise ConfigError(f'--num={num}: draw at least one sample.')
  y_N = labels_for(trained, num, labels)
  state = _fitted(trained, dataset, name, workdir, options, log)
  code_dim = int(trained.encode(dataset.x_train[:1], dataset.y_train[:1] if trained.num_classes else None).shape[1])
  x = np.asarray(_draw(trained, name, state, seed, num, options, code_dim, y_N), np.float32)
  return np.clip(x, 0.0, 1.0) if dataset.kind == 'image' else x


def score(x_NxD: np.ndarray, dataset: data.Dataset, log: Log = print) -> dict[str, float]:
  """``{'test/fd_classifier', 'test/precision', 'test/recall', 'test/density', 'test/coverage'}`` of samples
  against the test split in the features of the dataset's cached classifier (``aelab.eval.classifier``;
  k = 5 nearest neighbours for all four, as ``samples.sample_metrics``). Raises DataError for unlabelled data."""
  if len(x_NxD) < 6:
    raise DataError(f'{len(x_NxD)} samples are too few to score (k=5 nearest neighbours): draw more (--num).')
  net = classifier.load_or_train(dataset, log)
  metrics = samples.sample_metrics(net.features(dataset.x_test), net.features(x_NxD))
  return {f'test/{k}': v for k, v in metrics.items()} | {'test/classifier_accuracy': net.test_accuracy}
