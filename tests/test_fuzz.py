"""Fuzzing (issue 12): hundreds of generated bad inputs to the data loaders (``data.load``: npz, npy inside
and instead of npz, csv, IDX, and the ``config.data`` fields) and to config validation (``config.from_dict``
then ``config.validate``, as ``aelab.evaluate`` reads a workdir's config.json). Every input ends in
``data.DataError`` / ``config.ConfigError``, or loads: then the dataset is finite float32 with one row per
label. Seeded numpy generation; no training, a few seconds in all."""
import gzip
import io
import math
import zipfile

import ml_collections
import numpy as np

from aelab import config as config_lib, data

SEED = 12
DTYPES = (object, np.complex64, np.complex128, bool, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64,
          np.float16, np.float32, np.float64, 'U3', [('a', 'f4'), ('b', 'i4')])
SHAPES = ((), (0,), (7,), (0, 4), (30, 0), (30, 4), (30, 1), (1, 4), (2, 4), (30, 4, 4), (30, 0, 4), (30, 4, 4, 1),
          (30, 4, 4, 3), (30, 4, 4, 0), (30, 2, 2, 2, 2), (5, 3, 3))
SCALES = (1.0, 255.0, 1e30, 1e40, 1e300)
CLEAN = 0.2  # the fraction of inputs generated valid, which must load


class Case:
  """One generated input: a description for the failure message, a thunk that loads it, and the names
  (file or directory, config field) of which an error message must contain one."""

  def __init__(self, description: str, run, names: tuple[str, ...]):
    self.description, self.run, self.names = description, run, names


def random_array(rng: np.random.Generator) -> np.ndarray:
  """An array of a random dtype and shape, values of a random scale, with NaN / inf patterns for floats."""
  dtype, shape = DTYPES[rng.integers(len(DTYPES))], SHAPES[rng.integers(len(SHAPES))]
  if dtype is object:
    values = [int(v) if rng.random() < 0.5 else f's{v}' for v in rng.integers(0, 9, math.prod(shape))]
    x = np.empty(shape, object)
    x.reshape(-1)[:] = values
    return x
  if dtype == 'U3' or isinstance(dtype, list):
    return np.zeros(shape, dtype)
  values = rng.normal(size=shape) * SCALES[rng.integers(len(SCALES))]
  if rng.random() < 0.5:  # images-like values
    values = rng.integers(0, 256, shape) / (255.0 if rng.random() < 0.5 else 1.0)
  if np.issubdtype(np.dtype(dtype), np.complexfloating):
    values = values + 1j * rng.normal(size=shape)
  with np.errstate(all='ignore'):
    x = values.astype(dtype)
  if np.issubdtype(x.dtype, np.inexact) and x.size:
    pattern = rng.integers(5)
    flat = x.reshape(-1)
    if pattern == 1:
      flat[rng.integers(flat.size)] = np.nan
    elif pattern == 2:
      flat[rng.integers(flat.size)] = np.inf * rng.choice([-1, 1])
    elif pattern == 3:
      flat[:] = np.nan
  return x


def random_labels(rng: np.random.Generator, n: int) -> np.ndarray | None:
  kind = rng.integers(8)
  return [None, np.arange(n) % 3, np.arange(max(n - 1, 0)), (np.arange(n) % 3).astype(float),
          rng.normal(size=n), np.arange(n) + 0.5j, np.array(['a'] * n), np.zeros((n, 2))][kind]


def damage(rng: np.random.Generator, raw: bytes) -> bytes:
  """raw, or raw truncated, with bytes flipped, replaced by garbage, or emptied."""
  kind = rng.integers(6)
  if kind == 0 or not raw:
    return raw
  if kind == 1:
    return raw[:rng.integers(len(raw))]
  if kind == 2:
    flipped = bytearray(raw)
    for i in rng.integers(0, len(raw), 8):
      flipped[i] ^= 0xFF
    return bytes(flipped)
  if kind == 3:
    return rng.bytes(int(rng.integers(1, 600)))
  if kind == 4:
    return b''
  return raw[:len(raw) // 2] + rng.bytes(50)


def npz_bytes(rng: np.random.Generator, x: np.ndarray, y: np.ndarray | None) -> bytes:
  """An npz archive of x (and y), sometimes compressed, under another name, or as a bare .npy."""
  buffer = io.BytesIO()
  arrays = {'x': x} if y is None else {'x': x, 'y': y}
  kind = rng.integers(5)
  if kind == 0:
    np.save(buffer, x, allow_pickle=True)  # a .npy file where an .npz belongs
  elif kind == 1:
    np.savez_compressed(buffer, **arrays)
  elif kind == 2:
    np.savez(buffer, features=x)
  else:
    np.savez(buffer, **arrays)
  return buffer.getvalue()


def bad_npy_member(rng: np.random.Generator) -> bytes:
  """A zip whose x.npy holds a damaged or absurd .npy (a header promising 10^12 values, a cut header)."""
  buffer = io.BytesIO()
  np.save(buffer, rng.normal(size=(30, 4)))
  npy = buffer.getvalue()
  kind = rng.integers(3)
  if kind == 0:
    npy = npy.replace(b"'shape': (30, 4)", b"'shape': (1000000, 1000000)")
  elif kind == 1:
    npy = npy[:rng.integers(5, 60)]
  else:
    npy = npy.replace(b"'descr': '<f8'", b"'descr': '<q9'")
  archive = io.BytesIO()
  with zipfile.ZipFile(archive, 'w') as z:
    z.writestr('x.npy', npy)
  return archive.getvalue()


def valid_array(rng: np.random.Generator) -> np.ndarray:
  """A valid x: a float table (any finite values) or images (uint8, or floats in [0, 1])."""
  kind = rng.integers(3)
  if kind == 0:
    return (rng.normal(size=(30, 4)) * 100).astype(rng.choice([np.float16, np.float32, np.float64]))
  if kind == 1:
    return rng.integers(0, 256, (30, 4, 4, int(rng.choice([1, 3]))), dtype=np.uint8)
  return rng.random((30, 4, 4)).astype(np.float32)


def npz_case(rng: np.random.Generator, tmp, i: int) -> Case:
  if rng.random() < CLEAN:
    path, x = tmp / f'npz{i}.npz', valid_array(rng)
    np.savez(path, x=x, **({'y': np.arange(30) % 4} if rng.random() < 0.5 else {}))
    fields = {'name': 'npz', 'path': str(path), 'binarize': 'static' if x.ndim > 2 else 'none'}
    return Case(f'valid npz {x.dtype} {x.shape}', lambda: data.load(ml_collections.ConfigDict(fields)), (str(tmp),))
  x = random_array(rng)
  y = random_labels(rng, len(x) if x.ndim else 1)
  raw = bad_npy_member(rng) if rng.random() < 0.15 else npz_bytes(rng, x, y)
  raw = damage(rng, raw) if rng.random() < 0.4 else raw
  path = tmp / f'npz{i}.npz'
  if rng.random() < 0.05:
    path.mkdir()
  else:
    path.write_bytes(raw)
  test_path = None
  if rng.random() < 0.3:
    test_path = tmp / f'npz{i}_test.npz'
    np.savez(test_path, x=random_array(rng))
  fields = {'name': 'npz', 'path': str(path), 'test_path': str(test_path) if test_path else None,
            **random_data_fields(rng)}
  return Case(f'npz {x.dtype} {x.shape} y={None if y is None else y.dtype} {fields}',
              lambda: data.load(ml_collections.ConfigDict(fields)), (str(tmp), 'data.'))


def csv_text(rng: np.random.Generator, clean: bool = False) -> str:
  """A table of 0 to 30 rows, an optional header naming a label column, now and then a bad token or a
  ragged row (never when ``clean``)."""
  rows, columns = (30, 3) if clean else (int(rng.choice([0, 1, 2, 30])), int(rng.choice([1, 2, 4])))
  header = rng.random() < 0.6
  names = [f'f{j}' for j in range(columns)]
  label = int(rng.integers(columns)) if header and rng.random() < 0.5 else None
  if label is not None:
    names[label] = str(rng.choice(['label', 'y', 'Label']))
  lines = [','.join(names)] if header else []
  tokens = ('nan', 'inf', '-inf', '', 'abc', '"1"', '1e39', '1e400', '3;4', ' 7 ', '0x1')
  for _ in range(rows):
    values = [f'{v:.3g}' for v in rng.normal(size=columns) * 10]
    if label is not None and (clean or rng.random() < 0.9):
      values[label] = str(rng.integers(3))  # class ids, now and then not
    if rng.random() < 0.1 and not clean:
      values[rng.integers(columns)] = str(rng.choice(tokens))
    if rng.random() < 0.05 and not clean:
      values.append('5')  # a ragged row
    lines.append(','.join(values))
  return '\n'.join(lines) + ('\n' if rng.random() < 0.8 else '')


def csv_case(rng: np.random.Generator, tmp, i: int) -> Case:
  path = tmp / f't{i}.csv'
  if rng.random() < CLEAN:
    path.write_text(csv_text(rng, clean=True))
    fields = {'name': 'csv', 'path': str(path)}
    return Case('valid csv', lambda: data.load(ml_collections.ConfigDict(fields)), (str(tmp),))
  text = csv_text(rng)
  kind = rng.integers(10)
  if kind == 0:
    path.write_bytes(rng.bytes(int(rng.integers(1, 400))))
  elif kind == 1:
    path.write_bytes(damage(rng, text.encode()))
  elif kind == 2:
    path.write_text(text.replace(',', '\t'))
  else:
    path.write_text(text)
  test_path = None
  if rng.random() < 0.3:
    test_path = tmp / f't{i}_test.csv'
    test_path.write_text(csv_text(rng))
  fields = {'name': 'csv', 'path': str(path), 'test_path': str(test_path) if test_path else None,
            **random_data_fields(rng)}
  return Case(f'csv {text[:80]!r} {fields}', lambda: data.load(ml_collections.ConfigDict(fields)),
              (str(tmp), 'data.'))


def idx_bytes(rng: np.random.Generator, magic: int, dims: tuple[int, ...], count: int) -> bytes:
  header = magic.to_bytes(4, 'big') + np.asarray(dims, '>u4').tobytes()
  return header + rng.integers(0, 256, count, dtype=np.uint8).tobytes()


def idx_case(rng: np.random.Generator, tmp, i: int) -> Case:
  directory = tmp / f'idx{i}'
  directory.mkdir()
  clean = rng.random() < CLEAN
  n, h, w = int(rng.choice([0, 1, 5, 30])), int(rng.choice([0, 1, 4])), int(rng.choice([1, 4, 28]))
  magic = int(rng.choice([2051, 2051, 2051, 2049, 0x0D03, 12345]))
  count = n * h * w + int(rng.choice([0, 0, 0, -1, 7]))
  if clean:
    n, h, w, magic, count = 30, 4, 4, 2051, 30 * 4 * 4
  images = idx_bytes(rng, magic, (n, h, w), max(count, 0))
  labels = idx_bytes(rng, int(rng.choice([2049, 2049, 2051])) if not clean else 2049,
                     (n + int(rng.choice([0, 0, 1])) * (not clean),), n)
  gz = rng.random() < 0.5
  hurt = lambda raw, p: damage(rng, raw) if rng.random() < p and not clean else raw  # noqa: E731
  for role in ('train', 't10k')[:int(rng.integers(1, 3))]:
    name = f'{role}-images-idx3-ubyte' + ('.gz' if gz else '')
    (directory / name).write_bytes(hurt(gzip.compress(hurt(images, 0.4)), 0.3) if gz else hurt(images, 0.4))
    if rng.random() < 0.6:
      (directory / f'{role}-labels-idx1-ubyte').write_bytes(hurt(labels, 0.3))
  fields = {'name': 'idx', 'path': str(directory), **({} if clean else random_data_fields(rng))}
  return Case(f'idx n={n} h={h} w={w} magic={magic} count={count} gz={gz} {fields}',
              lambda: data.load(ml_collections.ConfigDict(fields)), (str(directory), 'data.'))


def random_data_fields(rng: np.random.Generator) -> dict:
  """Usually nothing; sometimes one config.data field with a random, often invalid, value."""
  if rng.random() < 0.7:
    return {}
  field, values = [('test_fraction', [0.2, 0.0, 1.0, -0.5, math.nan, 0.9, 'x']),
                   ('binarize', ['none', 'static', 'dynamic', 'bogus', 3]),
                   ('binarize_threshold', [0.5, math.nan, 2.0]),
                   ('max_train_examples', [0, 5, -1, 2.5]), ('max_test_examples', [0, 3, -2]),
                   ('split_seed', [0, 3, -1, 1.5, True, 2 ** 70]), ('standardize', [True, False]),
                   ('path', [3, 4.5])][rng.integers(8)]
  return {field: values[rng.integers(len(values))]}


VALUES = (None, math.nan, math.inf, -math.inf, -1, 0, 1, 0.5, 1e308, 2 ** 64, True, 'abc', '', [], [1, 'a'], [0],
          [64, 32], {}, {'a': 1}, 'relu', 'mse', 'sigmoid', 'vae', 'conv', 'kl_sparsity', 'contractive', 'mixture')


def config_case(rng: np.random.Generator, i: int) -> Case:
  """base() as config.json holds it, with one to three fields (or a section) replaced by random values."""
  values = config_lib.base().to_dict()
  fields = [(s, f) for s, section in values.items() if isinstance(section, dict) for f in section]
  changed = []
  for _ in range(rng.integers(1, 4)):
    section, field = fields[rng.integers(len(fields))]
    value = VALUES[rng.integers(len(VALUES))]
    if rng.random() < 0.05:
      values[section] = value
    elif isinstance(values[section], dict):
      values[section][field] = value
    changed.append((section, field, value))
  if rng.random() < 0.03:
    values = [values]

  def run():
    config = config_lib.from_dict(values)
    config_lib.validate(config)
    return config
  return Case(f'config {changed}', run, tuple({f'{s}.{f}' for s, f, _ in changed} | {s for s, _, _ in changed}
                                             | {'JSON object'}))


def cases(tmp) -> list[Case]:
  rng = np.random.default_rng(SEED)
  generated = [npz_case(rng, tmp, i) for i in range(110)]
  generated += [csv_case(rng, tmp, i) for i in range(70)]
  generated += [idx_case(rng, tmp, i) for i in range(50)]
  generated += [config_case(rng, i) for i in range(150)]
  return generated


def check_dataset(dataset: data.Dataset) -> None:
  """What a dataset that loads must be: finite float32 rows of the example shape, one label per row."""
  for x, y in ((dataset.x_train, dataset.y_train), (dataset.x_test, dataset.y_test)):
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == math.prod(dataset.shape) > 0
    assert len(x) > 0 and np.isfinite(x).all()
    assert y is None or (y.dtype == np.int32 and y.shape == (len(x),))


def test_every_generated_bad_input_ends_in_a_data_or_config_error(tmp_path):
  outcomes = {'error': 0, 'loaded': 0}
  escaped, unclear = [], []
  for case in cases(tmp_path):
    try:
      result = case.run()
    except (data.DataError, config_lib.ConfigError) as e:
      if case.description.startswith('valid'):
        escaped.append(f'{case.description}: a valid input failed: {e}')
      if '\n' in str(e).strip() or not any(name in str(e) for name in case.names):
        unclear.append(f'{case.description}: {e}')
      outcomes['error'] += 1
      continue
    except Exception as e:  # noqa: BLE001  (what the test looks for: any other exception)
      escaped.append(f'{case.description}: {type(e).__name__}: {e}')
      continue
    if isinstance(result, data.Dataset):
      check_dataset(result)
    outcomes['loaded'] += 1
  assert not escaped, '\n'.join(escaped)
  assert not unclear, '\n'.join(unclear)  # one line naming the file, directory or field
  assert sum(outcomes.values()) >= 380 and outcomes['error'] >= 200, outcomes
  assert outcomes['loaded'] >= 40, outcomes  # valid inputs among them still load


def test_fuzz_generation_is_seeded(tmp_path):
  (tmp_path / 'a').mkdir()
  (tmp_path / 'b').mkdir()
  first = [c.description.replace(str(tmp_path / 'a'), '') for c in cases(tmp_path / 'a')]
  assert first == [c.description.replace(str(tmp_path / 'b'), '') for c in cases(tmp_path / 'b')]
