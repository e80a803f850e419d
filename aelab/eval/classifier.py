"""The ``fd_classifier`` feature space: a small classifier that aelab trains once per dataset and caches.

Inception-v3 features (FID, Heusel et al. 2017) need weights that are not available offline and were
trained on 299x299 colour photographs, not 28x28 digits. Instead aelab trains a small net on the
training split's labels: for images two stride-2 3x3 convolutions (32, 64 channels, ReLU) and a dense
layer of ``FEATURES`` ReLU units, for tabular data two dense layers (256, ``FEATURES``); a linear layer
gives the class logits. The features are the ``FEATURES`` units before it. The trained parameters are
cached under ``<cache>/fd_classifier/<fingerprint>/`` (``params.msgpack`` and ``info.json`` with its
test accuracy), where ``<cache>`` is ``$AELAB_CACHE`` or ``$XDG_CACHE_HOME/aelab`` (``~/.cache/aelab``)
and the fingerprint hashes the training examples, labels, shape and this recipe (:data:`RECIPE`), so
another dataset or recipe trains a new one.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aelab import data
from aelab.errors import DataError
from aelab.nn import fit

FEATURES = 128
RECIPE = {'version': 1, 'features': FEATURES, 'epochs': 10, 'batch_size': 128, 'learning_rate': 1e-3, 'seed': 0}


class Net(nn.Module):
  """``__call__(x_BxD) -> (features_BxF, logits_BxC)``: conv net for ``H x W x C`` images, MLP otherwise."""
  shape: tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    if len(self.shape) == 3:
      h = x_BxD.reshape(-1, *self.shape)
      for channels in (32, 64):
        h = nn.relu(nn.Conv(channels, (3, 3), strides=(2, 2), padding='SAME')(h))
      h = h.reshape(h.shape[0], -1)
    else:
      h = nn.relu(nn.Dense(256)(x_BxD))
    features = nn.relu(nn.Dense(FEATURES)(h))
    return features, nn.Dense(self.num_classes)(features)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A trained feature net: ``features(x_NxD) -> N x FEATURES`` (float32 inputs in the data's scale,
  ``[0, 1]`` for images), its ``test_accuracy`` and where it is cached."""
  features: Callable[[np.ndarray], np.ndarray]
  test_accuracy: float
  path: str


def cache_root() -> str:
  """``$AELAB_CACHE``, else ``$XDG_CACHE_HOME/aelab`` (``~/.cache/aelab``)."""
  if os.environ.get('AELAB_CACHE'):
    return os.environ['AELAB_CACHE']
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'aelab')


def fingerprint(dataset: data.Dataset) -> str:
  """A hex digest of the training examples, labels, example shape and :data:`RECIPE` (first 16 chars)."""
  h = hashlib.sha256(json.dumps([RECIPE, list(dataset.shape), str(dataset.train.dtype)]).encode())
  h.update(np.ascontiguousarray(dataset.train).tobytes())
  h.update(np.ascontiguousarray(dataset.y_train).tobytes())
  return h.hexdigest()[:16]


def _train(net: Net, dataset: data.Dataset, params: Any) -> Any:
  def loss(p, batch, key):
    logits = net.apply(p, batch[0])[1]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]))

  r = RECIPE
  params, _ = fit.fit_arrays(loss, params, (dataset.x_train, dataset.y_train), jax.random.key(r['seed'] + 1),
                             r['epochs'], min(r['batch_size'], len(dataset.train)), r['learning_rate'])
  return params


def load_or_train(dataset: data.Dataset, log: Callable[[str], None] = print) -> Classifier:
  """The cached classifier of ``dataset`` (training it on the training split first when none is cached).
  Raises DataError for a dataset without labels."""
  if dataset.y_train is None or dataset.y_test is None:
    raise DataError(f'fd_classifier trains a classifier on labels, but data.name={dataset.name} has none: use a '
                    'labelled dataset (digits, idx, mnist, npz with y) to evaluate samples.')
  num_classes = int(max(dataset.y_train.max(), dataset.y_test.max())) + 1
  net = Net(tuple(dataset.shape), num_classes)
  path = os.path.join(cache_root(), 'fd_classifier', fingerprint(dataset))
  template = net.init(jax.random.key(RECIPE['seed']), jnp.zeros((1, dataset.train.shape[1])))
  if os.path.exists(os.path.join(path, 'info.json')):
    with open(os.path.join(path, 'params.msgpack'), 'rb') as f:
      params = flax.serialization.from_bytes(template, f.read())
    with open(os.path.join(path, 'info.json')) as f:
      accuracy = json.load(f)['test_accuracy']
  else:
    log(f'fd_classifier: training the feature classifier of {dataset.name} once (cached in {path})')
    params = _train(net, dataset, template)
    accuracy = _accuracy(net, params, dataset)
    _save(path, params, {'test_accuracy': accuracy, 'recipe': RECIPE, 'dataset': dataset.name})
  apply = jax.jit(lambda x: net.apply(params, x)[0])
  return Classifier(lambda x: fit.apply_in_batches(apply, np.asarray(x, np.float32)), accuracy, path)


def _accuracy(net: Net, params: Any, dataset: data.Dataset) -> float:
  logits = fit.apply_in_batches(jax.jit(lambda x: net.apply(params, x)[1]), dataset.x_test)
  return float(np.mean(np.argmax(logits, axis=1) == dataset.y_test))


def _save(path: str, params: Any, info: dict) -> None:
  """Writes the parameters, then ``info.json`` (its presence marks a complete entry), each atomically."""
  os.makedirs(path, exist_ok=True)
  for name, content, mode in (('params.msgpack', flax.serialization.to_bytes(params), 'wb'),
                              ('info.json', json.dumps(info, indent=1), 'w')):
    tmp = os.path.join(path, f'.{name}.{os.getpid()}')
    with open(tmp, mode) as f:
      f.write(content)
    os.replace(tmp, os.path.join(path, name))
