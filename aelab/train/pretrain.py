"""Greedy layer-wise pretraining of a stack of denoising autoencoders, then supervised fine-tuning.

Vincent, Larochelle, Lajoie, Bengio & Manzagol (2010), Stacked Denoising Autoencoders: Learning Useful
Representations in a Deep Network with a Local Denoising Criterion, JMLR 11:3371-3408, Sec. 3.5 and
Fig. 3: layer ``l`` is a denoising autoencoder (one sigmoid code layer, masking noise on its input,
cross-entropy reconstruction of the clean input) trained on the codes of layer ``l - 1`` of the
uncorrupted data; the encoders are then stacked under a softmax layer and the whole network is
fine-tuned on labels. Bengio, Lamblin, Popovici & Larochelle (2007) is the greedy procedure.

Training reuses ``aelab.train.engine``: each layer is an ``ae`` config run by :func:`fit` (``engine.fit``,
a group of one), and fine-tuning uses ``optimizers.make_train_step`` / ``engine.make_train_epoch`` with the
integer label riding as the last column of each row, so the same scanned epoch serves a classifier.

The stack's config (see ``configs/stacked_dae.py``) is a base config with two more groups:
``pretrain`` (``widths``, ``num_epochs``, ``batch_size``, ``learning_rate``) and ``finetune``
(``num_steps``, ``batch_size``, ``learning_rate``); ``model.activation`` is the
units' nonlinearity and ``corruption`` the pretraining noise.
"""
import copy
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aelab import config as config_lib
from aelab import data
from aelab.train import engine, optimizers
from aelab.nn import nets

Params = Any
Log = Callable[[str], None]


def _quiet(_: str) -> None:
  pass


# ---- one autoencoder on arrays, without a workdir ----


def fit(config: ml_collections.ConfigDict, dataset: data.Dataset, log: Log = _quiet
        ) -> tuple[engine.Run, Params, list[dict[str, float]]]:
  """Trains ``config``'s model on ``dataset.x_train`` for ``config.train.num_epochs``; no workdir.

  For data made in memory (codes of a lower layer, centred images, an S-curve), which
  ``engine.train_and_evaluate`` (it loads ``config.data`` itself) cannot take; ``engine.fit`` trains it
  as a group of one. Returns ``(run, params, history)``; ``history`` holds one record per epoch with
  ``train/*`` (means over the epoch's steps) and the ``test/*`` metrics of the family's ``eval``.
  Raises ConfigError for an invalid config or a batch larger than the data, FloatingPointError when
  the loss stops being finite.
  """
  return engine.fit(config, dataset, log)


def arrays_dataset(x_train: np.ndarray, x_test: np.ndarray, name: str, y_train=None, y_test=None,
                   kind: str = 'tabular') -> data.Dataset:
  """A ``data.Dataset`` of in-memory ``N x D`` float32 arrays (codes, centred data, synthetic data)."""
  x_train, x_test = np.asarray(x_train, np.float32), np.asarray(x_test, np.float32)
  return data.Dataset(x_train, y_train, x_test, y_test, (x_train.shape[1],), kind, name)


# ---- greedy layer-wise pretraining ----


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the ``pretrain`` and ``finetune`` groups. Raises ConfigError naming the field."""
  config_lib.validate(config)
  p, f = config.pretrain, config.finetune
  _check(len(p.widths) >= 1 and all(isinstance(w, int) and w >= 1 for w in p.widths),
         f'pretrain.widths={p.widths} must be a non-empty tuple of positive integers, e.g. "(500, 500)".')
  for field, value in (('pretrain.num_epochs', p.num_epochs), ('pretrain.batch_size', p.batch_size),
                       ('finetune.num_steps', f.num_steps), ('finetune.batch_size', f.batch_size)):
    _check(isinstance(value, int) and value >= 1, f'{field}={value} must be a positive integer.')
  for field, value in (('pretrain.learning_rate', p.learning_rate), ('finetune.learning_rate', f.learning_rate)):
    _check(value > 0 and math.isfinite(value), f'{field}={value} must be a positive number.')
  _check(config.corruption.name != 'gaussian' or not config.corruption.clip or config.model.activation == 'sigmoid',
         'Gaussian corruption clips to [0, 1]: use masking noise or a sigmoid model.activation.')


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise config_lib.ConfigError(message)


def layer_config(config: ml_collections.ConfigDict, layer: int) -> ml_collections.ConfigDict:
  """The ``ae`` config of layer ``layer``: one ``model.activation`` code layer of width
  ``pretrain.widths[layer]``, the stack's corruption and likelihood, the ``pretrain`` optimizer."""
  c = copy.deepcopy(config)
  c.model.update(name='ae', hidden=(), latent_dim=config.pretrain.widths[layer],
                 code_activation=config.model.activation, tied=False)
  c.optimizer.learning_rate = config.pretrain.learning_rate
  c.train.update(num_epochs=config.pretrain.num_epochs, batch_size=config.pretrain.batch_size)
  c.seed = config.seed * 1000 + layer  # each layer its own root key
  return c


def pretrain(config: ml_collections.ConfigDict, x_train_NxD: np.ndarray, x_test_MxD: np.ndarray,
             log: Log = _quiet) -> tuple[list[Params], list[list[dict[str, float]]]]:
  """Greedy layer-wise pretraining (Vincent et al. 2010, Fig. 3) on unlabelled ``x`` in [0, 1].

  Layer ``l`` is trained as a denoising autoencoder on the codes of layers ``0..l-1`` of the clean
  inputs; its reconstruction target is its own clean input. Returns ``(encoders, histories)``:
  ``encoders[l]`` is ``{'kernel': D_l x W_l, 'bias': W_l}`` and ``histories[l]`` is :func:`fit`'s
  history of layer ``l`` (``test/recon``: the layer's reconstruction loss on the test codes, in nats
  per example for the default Bernoulli likelihood).
  Raises ConfigError as :func:`validate`.
  """
  validate(config)
  encoders, histories = [], []
  h_train, h_test = x_train_NxD, x_test_MxD
  for layer, width in enumerate(config.pretrain.widths):
    log(f'pretraining layer {layer + 1}/{len(config.pretrain.widths)}: {h_train.shape[1]} -> {width}')
    # Inputs and sigmoid codes lie in [0, 1], as the Bernoulli likelihood needs: kind 'image' tells
    # engine.check_compatible so (a 'tabular' dataset is taken to be standardized).
    layer_data = arrays_dataset(h_train, h_test, f'layer{layer}', kind='image')
    run, params, history = fit(layer_config(config, layer), layer_data, log)
    dense = params['params']['encoder']['mlp']['dense_0']
    encoders.append({'kernel': dense['kernel'], 'bias': dense['bias']})
    histories.append(history)
    code = jax.jit(lambda x, d=dense: nets.activation(config.model.activation)(x @ d['kernel'] + d['bias'][None]))
    h_train, h_test = np.asarray(code(h_train)), np.asarray(code(h_test))
  return encoders, histories


# ---- the supervised network and its fine-tuning ----


def classifier(config: ml_collections.ConfigDict, num_classes: int) -> nets.MLP:
  """The stack under a softmax layer: ``x_BxD -> logits_BxK``, hidden widths ``pretrain.widths``."""
  return nets.MLP((*config.pretrain.widths, num_classes), config.model.activation, 'identity')


def init_classifier(config: ml_collections.ConfigDict, key: jax.Array, data_dim: int, num_classes: int,
                    encoders: list[Params] | None = None) -> Params:
  """Random initial parameters (flax defaults), with the hidden layers replaced by the pretrained
  ``encoders`` when given; the softmax layer stays random. Raises ValueError on a shape mismatch."""
  params = classifier(config, num_classes).init(key, jnp.zeros((1, data_dim)))
  if encoders is None:
    return params
  layers = dict(params['params'])
  for i, enc in enumerate(encoders):
    if enc['kernel'].shape != layers[f'dense_{i}']['kernel'].shape:
      raise ValueError(f'pretrained layer {i} has kernel {enc["kernel"].shape}, the classifier '
                       f'{layers[f"dense_{i}"]["kernel"].shape}; pretrain with the same pretrain.widths.')
    layers[f'dense_{i}'] = {'kernel': jnp.asarray(enc['kernel']), 'bias': jnp.asarray(enc['bias'])}
  return {'params': layers}


def make_classifier_objective(mlp: nets.MLP) -> Callable:
  """``objective(params, xy_BxD1, key, hp) -> (loss, metrics)``: the mean softmax cross-entropy (nats
  per example) of the label in the last column of ``xy`` given the features before it; ``metrics``
  has ``loss`` and ``error`` (fraction misclassified). ``key`` and ``hp`` are unused (no noise)."""

  def objective(params, xy_BxD1, key, hp):
    del key, hp
    x, y = xy_BxD1[:, :-1], xy_BxD1[:, -1].astype(jnp.int32)
    logits = mlp.apply(params, x)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return loss, {'loss': loss, 'error': jnp.mean(jnp.argmax(logits, -1) != y)}

  return objective


def finetune(config: ml_collections.ConfigDict, params: Params, x_NxD: np.ndarray, y_N: np.ndarray,
             key: jax.Array, log: Log = _quiet) -> Params:
  """Fine-tunes the whole classifier on labelled ``(x, y)`` for ``finetune.num_steps`` Adam steps
  (``finetune.learning_rate``, batch ``min(finetune.batch_size, N)``), whatever ``N`` is.

  Raises ValueError when ``y`` is missing or does not have ``N`` integer labels in ``[0, K)``.
  """
  if y_N is None or np.shape(y_N) != (len(x_NxD),):
    raise ValueError('Fine-tuning needs one integer label per example; the dataset has none or too few.')
  f = config.finetune
  num_classes = params['params'][f'dense_{len(config.pretrain.widths)}']['kernel'].shape[1]
  if np.min(y_N) < 0 or np.max(y_N) >= num_classes:
    raise ValueError(f'labels must lie in [0, {num_classes}); found [{np.min(y_N)}, {np.max(y_N)}].')
  batch = min(f.batch_size, len(x_NxD))
  steps_per_epoch = len(x_NxD) // batch
  num_epochs = -(-f.num_steps // steps_per_epoch)
  tx = optax.adam(f.learning_rate)
  step = optimizers.make_train_step(make_classifier_objective(classifier(config, num_classes)), tx)
  epoch_fn = engine.make_train_epoch(step, batch, dynamic_binarize=False)
  xy = jnp.asarray(np.concatenate([x_NxD, np.asarray(y_N, np.float32)[:, None]], 1), jnp.float32)
  state = {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params)}
  for epoch in range(1, num_epochs + 1):
    state, metrics = epoch_fn(state, xy, jax.random.fold_in(key, epoch), {})
    if epoch == num_epochs or epoch % max(1, num_epochs // 4) == 0:
      log(f'  fine-tune epoch {epoch}/{num_epochs} train/loss={float(np.mean(metrics["loss"])):.4f} '
          f'train/error={float(np.mean(metrics["error"])):.4f}')
  return state['params']


def classification_error(config: ml_collections.ConfigDict, params: Params, x_MxD: np.ndarray,
                         y_M: np.ndarray) -> float:
  """Fraction of ``x`` whose argmax logit is not its label (classification error in [0, 1])."""
  num_classes = params['params'][f'dense_{len(config.pretrain.widths)}']['kernel'].shape[1]
  logits = jax.jit(classifier(config, num_classes).apply)(params, jnp.asarray(x_MxD))
  return float(np.mean(np.asarray(jnp.argmax(logits, -1)) != np.asarray(y_M)))


def labelled_subset(y_N: np.ndarray, num_labels: int, seed: int) -> np.ndarray:
  """Indices of ``num_labels`` examples drawn without replacement (``key(seed)``), at least one per
  class when ``num_labels`` allows; all indices when ``num_labels`` is 0 or at least ``N``."""
  n = len(y_N)
  if not num_labels or num_labels >= n:
    return np.arange(n)
  perm = np.asarray(jax.random.permutation(jax.random.key(seed), n))
  first = np.array([perm[np.flatnonzero(y_N[perm] == c)[0]] for c in np.unique(y_N)])[:num_labels]
  rest = perm[~np.isin(perm, first)][:num_labels - len(first)]
  return np.sort(np.concatenate([first, rest]))


def compare(config: ml_collections.ConfigDict, dataset: data.Dataset, num_labels: list[int],
            log: Log = _quiet) -> list[dict[str, Any]]:
  """Pretrains on all of ``dataset.x_train`` (unlabelled), then for each label count fine-tunes the
  pretrained stack and the same network from random initialization with the same labelled subset,
  key and step budget. Returns ``[{num_labels, seed, pretrained_error, random_error}]`` (test error).
  Raises ValueError when the dataset has no labels, ConfigError as :func:`validate`.
  """
  if dataset.y_train is None or dataset.y_test is None:
    raise ValueError('The stacked-DAE comparison needs labels (classification error); the dataset has none.')
  encoders, _ = pretrain(config, dataset.x_train, dataset.x_test, log)
  num_classes = int(max(dataset.y_train.max(), dataset.y_test.max())) + 1
  init_key, finetune_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1))
  results = []
  for n in num_labels:
    idx = labelled_subset(dataset.y_train, n, config.seed)
    row = {'num_labels': len(idx), 'seed': config.seed}
    for name, enc in (('pretrained', encoders), ('random', None)):
      log(f'fine-tuning the {name} network on {len(idx)} labels (seed {config.seed})')
      params = init_classifier(config, init_key, dataset.x_train.shape[1], num_classes, enc)
      params = finetune(config, params, dataset.x_train[idx], dataset.y_train[idx], finetune_key, log)
      row[f"{name}_error"] = classification_error(config, params, dataset.x_test, dataset.y_test)
    log(f'{len(idx)} labels: test error pretrained {row["pretrained_error"]:.4f}, random {row["random_error"]:.4f}')
    results.append(row)
  return results
