"""Tests for aelab.data: every source, the seeded split, binarization, standardization, the errors."""

import gzip
import pathlib
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets
from tensorflow_datasets.core.download import downloader

from aelab import data
from conftest import ROOT, load_config

sys.path.insert(0, str(ROOT / 'experiments'))
import embed_2d  # noqa: E402

MNIST_DIR = pathlib.Path(__file__).resolve().parents[2] / 'shared/data/mnist'


def cfg(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


def write_idx(path: pathlib.Path, array: np.ndarray, magic: int) -> None:
  """Writes a uint8 IDX file (gzip-compressed if path ends in .gz)."""
  header = magic.to_bytes(4, 'big') + np.asarray(array.shape, '>u4').tobytes()
  with (gzip.open if path.suffix == '.gz' else open)(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def rng(seed: int = 0) -> np.random.Generator:  # Test data only; aelab itself uses jax keys.
  return np.random.default_rng(seed)


# ---- digits and the seeded split ----

def test_digits_shapes_range_and_labels():
  ds = data.load(cfg(name='digits'))
  assert ds.x_train.shape == (1797 - 359, 64) and ds.x_test.shape == (359, 64)  # 359 = round(0.2 n).
  assert ds.x_train.dtype == ds.x_test.dtype == np.float32
  assert ds.x_train.min() == 0 and ds.x_train.max() == 1
  assert ds.y_train.dtype == np.int32 and set(np.unique(ds.y_train)) == set(range(10))
  assert (ds.shape, ds.kind, ds.name) == ((8, 8, 1), 'image', 'digits')


def test_split_is_the_documented_jax_permutation():
  ds = data.load(cfg(name='digits', test_fraction=0.5, split_seed=3))
  images = sk_datasets.load_digits().images.reshape(1797, 64) / 16
  perm = np.asarray(jax.random.permutation(jax.random.key(3), 1797))
  n_test = round(1797 * 0.5)
  np.testing.assert_allclose(ds.x_train, images[perm[:1797 - n_test]], atol=1e-7)
  np.testing.assert_allclose(ds.x_test, images[perm[1797 - n_test:]], atol=1e-7)


def test_same_seed_same_split_other_seed_other_split():
  a, b = data.load(cfg(name='digits')), data.load(cfg(name='digits', split_seed=0))
  c = data.load(cfg(name='digits', split_seed=1))
  np.testing.assert_array_equal(a.x_test, b.x_test)
  np.testing.assert_array_equal(a.y_train, b.y_train)
  assert a.x_test.shape == c.x_test.shape and not np.array_equal(a.x_test, c.x_test)


def test_max_examples_truncates_after_the_split():
  full = data.load(cfg(name='digits'))
  ds = data.load(cfg(name='digits', max_train_examples=100, max_test_examples=0))
  np.testing.assert_array_equal(ds.x_train, full.x_train[:100])
  np.testing.assert_array_equal(ds.y_train, full.y_train[:100])
  assert len(ds.x_test) == 359


# ---- binarization ----

def test_static_binarization_thresholds_train_and_test():
  grey = data.load(cfg(name='digits'))
  ds = data.load(cfg(name='digits', binarize='static', binarize_threshold=0.3))
  for x, x_grey in ((ds.x_train, grey.x_train), (ds.x_test, grey.x_test)):
    assert set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(x, (x_grey > 0.3).astype(np.float32))


def test_dynamic_binarization_keeps_train_grey_and_fixes_test():
  grey = data.load(cfg(name='digits'))
  a = data.load(cfg(name='digits', binarize='dynamic'))
  b = data.load(cfg(name='digits', binarize='dynamic'))
  np.testing.assert_array_equal(a.x_train, grey.x_train)
  assert set(np.unique(a.x_test)) == {0.0, 1.0} and a.x_test.dtype == np.float32
  np.testing.assert_array_equal(a.x_test, b.x_test)
  assert abs(a.x_test.mean() - grey.x_test.mean()) < 0.01  # Bernoulli(x): same mean.


def test_dynamic_binarize_is_bernoulli_of_x():
  x = jnp.full((200_000,), 0.3)
  s = data.dynamic_binarize(jax.random.key(1), x)
  assert s.dtype == jnp.float32 and set(np.unique(s)) == {0.0, 1.0}
  assert abs(float(s.mean()) - 0.3) < 0.005  # Standard error ~0.001.
  assert not np.array_equal(s, data.dynamic_binarize(jax.random.key(2), x))
  np.testing.assert_array_equal(s, jax.jit(data.dynamic_binarize)(jax.random.key(1), x))
  edges = data.dynamic_binarize(jax.random.key(0), jnp.array([0.0, 1.0] * 50))
  np.testing.assert_array_equal(edges, np.array([0.0, 1.0] * 50))


# ---- idx ----

@pytest.mark.parametrize('suffix', ['', '.gz'])
def test_idx_train_and_t10k_files_are_the_splits(tmp_path, suffix):
  train, test = rng().integers(0, 256, (5, 4, 3)), rng(1).integers(0, 256, (2, 4, 3))
  write_idx(tmp_path / f'train-images-idx3-ubyte{suffix}', train, 2051)
  write_idx(tmp_path / f'train-labels-idx1-ubyte{suffix}', np.arange(5), 2049)
  write_idx(tmp_path / f't10k-images-idx3-ubyte{suffix}', test, 2051)
  write_idx(tmp_path / f't10k-labels-idx1-ubyte{suffix}', np.array([7, 8]), 2049)
  ds = data.load(cfg(name='idx', path=str(tmp_path)))
  np.testing.assert_allclose(ds.x_train, train.reshape(5, 12) / 255, atol=1e-7)
  np.testing.assert_allclose(ds.x_test, test.reshape(2, 12) / 255, atol=1e-7)
  np.testing.assert_array_equal(ds.y_test, [7, 8])
  assert ds.shape == (4, 3, 1) and ds.y_train.dtype == np.int32


def test_idx_single_images_file_without_labels_is_split(tmp_path):
  write_idx(tmp_path / 'my-images-idx3-ubyte', rng().integers(0, 256, (10, 2, 2)), 2051)
  ds = data.load(cfg(name='idx', path=str(tmp_path)))
  assert ds.x_train.shape == (8, 4) and ds.x_test.shape == (2, 4)
  assert ds.y_train is None and ds.y_test is None


def test_idx_bad_magic_and_label_mismatch_raise(tmp_path):
  write_idx(tmp_path / 't10k-images-idx3-ubyte.gz', np.zeros((4, 2, 2)), 2049)
  with pytest.raises(data.DataError, match='magic number 2049, expected 2051'):
    data.load(cfg(name='idx', path=str(tmp_path)))
  write_idx(tmp_path / 't10k-images-idx3-ubyte.gz', np.zeros((4, 2, 2)), 2051)
  write_idx(tmp_path / 't10k-labels-idx1-ubyte.gz', np.zeros(3), 2049)
  with pytest.raises(data.DataError, match='labels of shape .3,. for 4 examples'):
    data.load(cfg(name='idx', path=str(tmp_path)))


def test_idx_truncated_and_missing_files_raise(tmp_path):
  path = tmp_path / 't10k-images-idx3-ubyte'
  path.write_bytes((2051).to_bytes(4, 'big') + np.asarray([4, 2, 2], '>u4').tobytes() + bytes(10))
  with pytest.raises(data.DataError, match='truncated or corrupt'):
    data.load(cfg(name='idx', path=str(tmp_path)))
  with pytest.raises(FileNotFoundError, match='images-idx3-ubyte'):
    data.load(cfg(name='idx', path=str(tmp_path / 'nowhere')))
  path.unlink()
  with pytest.raises(FileNotFoundError, match=r'no \*images-idx3-ubyte'):
    data.load(cfg(name='idx', path=str(tmp_path)))
  with pytest.raises(data.DataError, match='needs data.path'):
    data.load(cfg(name='idx'))


def test_real_mnist_test_set_splits_8000_2000():
  if not (MNIST_DIR / 't10k-images-idx3-ubyte.gz').exists():
    pytest.skip(f'real MNIST IDX files not found in {MNIST_DIR}')
  ds = data.load(cfg(name='idx', path=str(MNIST_DIR)))
  assert ds.x_train.shape == (8000, 784) and ds.x_test.shape == (2000, 784)
  assert ds.shape == (28, 28, 1) and ds.x_train.min() == 0 and ds.x_train.max() == 1
  assert set(np.unique(ds.y_test)) == set(range(10))
  assert 0.1 < ds.x_train.mean() < 0.15  # MNIST's mean pixel is about 0.13.


# ---- npz ----

def test_npz_tabular_is_standardized_with_train_statistics(tmp_path):
  train = rng().normal(5.0, 3.0, (200, 6))
  train[:, 2] = 4.0  # A constant column: std 0, divided by 1.
  test = rng(1).normal(5.0, 3.0, (50, 6))
  np.savez(tmp_path / 'train.npz', x=train, y=np.arange(200) % 3)
  np.savez(tmp_path / 'test.npz', x=test, y=np.arange(50) % 3)
  ds = data.load(cfg(name='npz', path=str(tmp_path / 'train.npz'), test_path=str(tmp_path / 'test.npz')))
  np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(ds.x_train.std(0), [1, 1, 0, 1, 1, 1], atol=1e-5)
  std = np.where(train.std(0) > 0, train.std(0), 1)
  np.testing.assert_allclose(ds.x_test, (test - train.mean(0)) / std, atol=1e-5)
  assert (ds.shape, ds.kind, ds.y_test.dtype) == ((6,), 'tabular', np.int32)


def test_npz_without_standardize_keeps_values_and_splits(tmp_path):
  x = rng().normal(size=(20, 3))
  np.savez(tmp_path / 'd.npz', x=x)
  ds = data.load(cfg(name='npz', path=str(tmp_path / 'd.npz'), standardize=False, test_fraction=0.25))
  assert ds.x_train.shape == (15, 3) and ds.x_test.shape == (5, 3) and ds.y_train is None
  np.testing.assert_allclose(np.sort(np.concatenate([ds.x_train, ds.x_test]), 0), np.sort(x, 0), atol=1e-6)


@pytest.mark.parametrize('image_shape', [(5, 4), (5, 4, 3)])
def test_npz_uint8_images_are_scaled(tmp_path, image_shape):
  x = rng().integers(0, 256, (30, *image_shape), dtype=np.uint8)
  np.savez(tmp_path / 'img.npz', x=x)
  ds = data.load(cfg(name='npz', path=str(tmp_path / 'img.npz'), binarize='static'))
  assert ds.kind == 'image' and ds.shape == (5, 4, image_shape[2] if len(image_shape) == 3 else 1)
  assert ds.x_train.shape == (24, 20 * ds.shape[2]) and set(np.unique(ds.x_train)) == {0.0, 1.0}


def test_npz_bad_contents_raise(tmp_path):
  def load(**arrays):
    np.savez(tmp_path / 'bad.npz', **arrays)
    return data.load(cfg(name='npz', path=str(tmp_path / 'bad.npz')))
  x = np.ones((10, 3))
  x[1, 1], x[2, 0], x[3, 2], x[4, 1] = np.nan, np.nan, np.nan, -np.inf
  with pytest.raises(data.DataError, match='3 NaN and 1 infinite'):
    load(x=x)
  with pytest.raises(data.DataError, match=r"no array 'x' \(it has: \['features', 'labels'\]\)"):
    load(features=np.ones((10, 3)), labels=np.zeros(10))
  with pytest.raises(data.DataError, match='0 examples'):
    load(x=np.ones((0, 3)))
  with pytest.raises(data.DataError, match='labels of shape'):
    load(x=np.ones((10, 3)), y=np.zeros(9))
  with pytest.raises(data.DataError, match=r'must lie in \[0, 1\]'):
    load(x=np.full((10, 2, 2), 255.0))
  with pytest.raises(data.DataError, match='leaves 0 test'):
    load(x=np.ones((2, 3)))


def test_npz_test_file_must_match_train(tmp_path):
  np.savez(tmp_path / 'train.npz', x=np.ones((10, 3)))
  np.savez(tmp_path / 'test.npz', x=np.ones((5, 4)))
  with pytest.raises(data.DataError, match='same features'):
    data.load(cfg(name='npz', path=str(tmp_path / 'train.npz'), test_path=str(tmp_path / 'test.npz')))
  with pytest.raises(FileNotFoundError, match="array 'x'"):
    data.load(cfg(name='npz', path=str(tmp_path / 'train.npz'), test_path=str(tmp_path / 'nope.npz')))


def test_binarize_on_tabular_data_raises(tmp_path):
  np.savez(tmp_path / 'd.npz', x=np.ones((10, 3)))
  with pytest.raises(data.DataError, match='images only'):
    data.load(cfg(name='npz', path=str(tmp_path / 'd.npz'), binarize='static'))


# ---- csv ----

def purchase_table(n: int = 120) -> np.ndarray:
  """An 18-feature purchase-like table: counts, durations, rates, flags; label last."""
  r = rng(7)
  features = np.concatenate([r.poisson(3.0, (n, 6)), r.exponential(60.0, (n, 6)),
                             r.uniform(0, 1, (n, 4)), r.integers(0, 2, (n, 2))], axis=1)
  return np.concatenate([features, r.integers(0, 2, (n, 1))], axis=1)


def test_csv_with_header_and_label_column(tmp_path):
  table = purchase_table()
  header = ','.join([f'f{i}' for i in range(18)] + ['label'])
  np.savetxt(tmp_path / 'p.csv', table, delimiter=',', header=header, comments='')
  ds = data.load(cfg(name='csv', path=str(tmp_path / 'p.csv')))
  assert ds.x_train.shape == (96, 18) and ds.x_test.shape == (24, 18) and ds.shape == (18,)
  assert ds.kind == 'tabular' and ds.y_train.dtype == np.int32 and set(np.unique(ds.y_train)) == {0, 1}
  np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)


def test_csv_without_header_has_no_labels(tmp_path):
  np.savetxt(tmp_path / 'p.csv', purchase_table(), delimiter=',')
  ds = data.load(cfg(name='csv', path=str(tmp_path / 'p.csv'), standardize=False))
  assert ds.x_train.shape == (96, 19) and ds.y_train is None
  assert set(np.unique(ds.x_train[:, 18])) <= {0.0, 1.0}  # The label column stays a feature.


def test_csv_y_column_in_the_middle_and_test_file(tmp_path):
  (tmp_path / 'train.csv').write_text('a,y,b\n1,0,2\n3,1,4\n5,1,6\n')
  (tmp_path / 'test.csv').write_text('a,y,b\n7,0,8\n')
  ds = data.load(cfg(name='csv', path=str(tmp_path / 'train.csv'),
                     test_path=str(tmp_path / 'test.csv'), standardize=False))
  np.testing.assert_array_equal(ds.x_train, [[1, 2], [3, 4], [5, 6]])
  np.testing.assert_array_equal(ds.y_train, [0, 1, 1])
  np.testing.assert_array_equal(ds.x_test, [[7, 8]])


def test_csv_bad_contents_raise(tmp_path):
  def load(text, test_text=None):
    (tmp_path / 'a.csv').write_text(text)
    test_path = None
    if test_text is not None:
      (tmp_path / 'b.csv').write_text(test_text)
      test_path = str(tmp_path / 'b.csv')
    return data.load(cfg(name='csv', path=str(tmp_path / 'a.csv'), test_path=test_path))
  with pytest.raises(data.DataError, match='0 NaN and 1 infinite'):
    load('1,2\n3,inf\n5,6\n7,8\n9,10\n')
  with pytest.raises(data.DataError, match="could not convert string 'abc'"):
    load('1,2\n3,abc\n')
  with pytest.raises(data.DataError, match='same features'):
    load('1,2\n3,4\n', '1,2,3\n')
  with pytest.raises(data.DataError, match='0 examples'):
    load('a,b\n')


def test_example_csv_is_reproducible_and_loads(tmp_path):
  path = tmp_path / 'blobs.csv'
  embed_2d.write_example_csv(str(path))
  assert path.read_text() == pathlib.Path(embed_2d.EXAMPLE_CSV).read_text()
  dataset = data.load(load_config('ae', f'csv={path}').data)
  assert dataset.x_train.shape == (320, 10) and set(np.unique(dataset.y_train)) == {0, 1, 2, 3}


# ---- tensorflow-datasets ----

def test_tfds_mnist_under_mock_data():
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = data.load(cfg(name='mnist'))
  # Under USE_CODE the split names are unknown (no dataset_info), so 'train' is split 16 / 4.
  assert ds.x_train.shape == (16, 784) and ds.x_test.shape == (4, 784)
  assert ds.shape == (28, 28, 1) and ds.kind == 'image' and ds.x_train.dtype == np.float32
  assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1 and ds.x_train.max() > 0.5
  assert ds.y_train.dtype == np.int32 and ds.y_train.max() < 10


class FakeSource:
  """A tfds data source with train and test splits: records {'image': 3 x 3 x 1 uint8, 'label'}."""

  def __init__(self, n: int, offset: int):
    self.n, self.offset = n, offset
    features = {'image': types.SimpleNamespace(shape=(3, 3, 1)), 'label': None}
    self.dataset_info = types.SimpleNamespace(splits={'train': 0, 'test': 0}, features=features)

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {'image': np.full((3, 3, 1), self.offset + i, np.uint8), 'label': i % 10}


def test_tfds_uses_train_and_test_splits(monkeypatch):
  calls = []
  def data_source(name, split, data_dir, download):
    calls.append((name, split, data_dir, download, downloader.MAX_RETRIES))
    return FakeSource(6, 0) if split == 'train' else FakeSource(3, 100)
  monkeypatch.setattr(tfds, 'data_source', data_source)
  ds = data.load(cfg(name='kmnist', tfds=dict(data_dir='/some/dir'), max_train_examples=4))
  assert calls == [('kmnist', s, '/some/dir', True, 3) for s in ('train', 'test')]
  assert downloader.MAX_RETRIES == 10  # Restored after the call.
  np.testing.assert_allclose(ds.x_train[:, 0], np.arange(4) / 255)
  np.testing.assert_allclose(ds.x_test[:, 0], np.arange(100, 103) / 255)
  assert ds.shape == (3, 3, 1) and list(ds.y_test) == [0, 1, 2]


def test_tfds_without_network_raises_dataset_unavailable(monkeypatch):
  def offline(*args, **kwargs):
    raise requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='storage.googleapis.com', port=443): Max retries exceeded")
  monkeypatch.setattr(tfds, 'data_source', offline)
  with pytest.raises(data.DatasetUnavailableError, match="could not download 'mnist'") as info:
    data.load(cfg(name='mnist'))
  assert 'data.name=digits' in str(info.value) and 'data.name=idx' in str(info.value)
  assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)


def test_tfds_unrelated_errors_are_not_swallowed(monkeypatch):
  def broken(*args, **kwargs):
    raise KeyError('unrelated')
  monkeypatch.setattr(tfds, 'data_source', broken)
  with pytest.raises(KeyError, match='unrelated'):
    data.load(cfg(name='mnist'))


# ---- config errors ----

def test_unknown_name_raises_data_error():
  with pytest.raises(data.DataError, match="'not_a_dataset' is neither one of .*digits"):
    data.load(cfg(name='not_a_dataset'))


@pytest.mark.parametrize('fields, message', [
    (dict(binarize='sometimes'), 'data.binarize'),
    (dict(test_fraction=1.0), 'data.test_fraction'),
    (dict(test_fraction=0.0), 'data.test_fraction'),
    (dict(binarize_threshold=2.0), 'data.binarize_threshold'),
    (dict(max_train_examples=-1), 'max_'),
    (dict(name=''), None),
])
def test_invalid_config_fields_raise(fields, message):
  fields = {'name': 'digits', **fields}
  with pytest.raises(data.DataError, match=message):
    data.load(cfg(**fields))


def test_import_is_cheap():
  code = "import sys, aelab.data; sys.exit('tensorflow_datasets' in sys.modules or 'sklearn' in sys.modules)"
  repo = pathlib.Path(__file__).resolve().parents[1]
  assert subprocess.run([sys.executable, '-c', code], cwd=repo, check=False).returncode == 0


def test_digits_read_without_scikit_learn_equal_load_digits():
  """The digits source reads scikit-learn's csv.gz directly (no scikit-learn import at start-up): the same
  images and labels as ``sklearn.datasets.load_digits``, in the same order."""
  from sklearn import datasets
  from aelab.data.sources import digits
  images_Nx8x8, labels_N = digits._digits()
  reference = datasets.load_digits()
  np.testing.assert_array_equal(images_Nx8x8, reference.images)
  np.testing.assert_array_equal(labels_N, reference.target)


@pytest.mark.parametrize('seed', [0, 7, -3, 2**31 - 1, 2**31, 2**40])
def test_seeded_permutation_and_run_keys_equal_the_eager_jax_random_ones(seed):
  """The split's permutation and a run's keys come from one program compiled at XLA's lowest level
  (aelab.nn.compiler.INTEGER): they must be jax.random's at XLA's defaults (compiler.DEFAULT; conftest sets
  others for the tests' own programs), bit for bit, for any seed: every documented number depends on them. Seeds beyond
  int32 take the eager path."""
  from aelab.train import program  # noqa: PLC0415
  from aelab.nn import compiler  # noqa: PLC0415
  default = compiler.DEFAULT

  def at_default_level(fn):
    return jax.jit(fn).lower().compile(default)()

  for n in (10, 1797):
    want = at_default_level(lambda: jax.random.permutation(jax.random.key(seed), n))
    np.testing.assert_array_equal(data.seeded_permutation(seed, n), np.asarray(want))
  want = at_default_level(lambda: jax.random.key_data(jax.random.split(jax.random.key(seed))))
  got = np.stack([np.asarray(jax.random.key_data(k)) for k in program.run_keys(seed)])
  np.testing.assert_array_equal(got, np.asarray(want))
