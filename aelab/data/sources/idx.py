"""``data.name=idx``: a directory (``data.path``) of MNIST-format IDX files, gzip-compressed or not:
``train-*`` and ``t10k-*`` (or ``test-*``) images (``*images-idx3-ubyte[.gz]``) as the two splits, with
their ``*labels-idx1-ubyte[.gz]`` beside them; or a single images file, then split by
``data.test_fraction``. Format: LeCun et al., http://yann.lecun.com/exdb/mnist/ (big-endian header:
magic, then one uint32 per dimension)."""
import gzip
import math
import pathlib
import re
from typing import Any

import numpy as np

from aelab.data import arrays
from aelab.errors import DataError

SECTION = None
CONFIG: dict[str, tuple[Any, str]] = {}
PATH = 'a directory of MNIST-format IDX files, e.g. t10k-images-idx3-ubyte.gz (+ labels-idx1)'

_IMAGES = re.compile(r'images[-.]idx3-ubyte(\.gz)?$')
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x0803: uint8, 3 dims; 0x0801: uint8, 1 dim.


def validate(data_config: Any) -> None:
  """No fields of its own (data.path is checked when read)."""


def adapt(config: Any) -> Any:
  """The config unchanged."""
  return config


def read(data_config: Any) -> arrays.Read:
  """The train and test splits (or the one images file). Raises DataError, DataNotFoundError (no images
  file in the directory, or no directory)."""
  directory = arrays.required_path(data_config, PATH)
  if not directory.is_dir():
    raise DataError(f'data.path={directory} is not a directory; expected {PATH}.')
  found = sorted(p for p in directory.iterdir() if _IMAGES.search(p.name))
  images = list({p.name.removesuffix('.gz'): p for p in found}.values())  # x.gz or x: one of them.
  roles = {_role(p.name): p for p in images}
  if 'train' in roles and 'test' in roles:
    return arrays.Read(_split(roles['train']), _split(roles['test']), 'image')
  if len(images) == 1:
    return arrays.Read(_split(images[0]), None, 'image')
  if not images:
    raise arrays.DataNotFoundError(f'no *images-idx3-ubyte[.gz] file in {directory}; expected {PATH}.')
  raise DataError(f'{directory} holds several IDX image files {[p.name for p in images]} without a '
                  'train-*/t10k-* pair; keep one dataset per directory.')


def _role(name: str) -> str | None:
  """'train' / 'test' from an IDX file name's prefix (train-, t10k-, test-), else None."""
  prefix = name[:name.index('images')]
  return 'train' if 'train' in prefix else 'test' if 't10k' in prefix or 'test' in prefix else None


def _split(images_path: pathlib.Path) -> arrays.Split:
  """Reads an images file and, if present beside it, its labels file (same name, labels-idx1)."""
  where = f'IDX file {images_path}'
  base = re.sub(r'images([-.])idx3', r'labels\1idx1', images_path.name.removesuffix('.gz'))
  label_files = [p for p in (images_path.with_name(base), images_path.with_name(base + '.gz')) if p.exists()]
  x = arrays.images(parse(images_path, IMAGES_MAGIC), where)
  y = parse(label_files[0], LABELS_MAGIC) if label_files else None
  return arrays.Split(arrays.Rows(x, arrays.labels(y, len(x), where)), where)


def parse(path: pathlib.Path, magic: int) -> np.ndarray:
  """Parses a uint8 IDX file (big-endian header: magic, then one uint32 per dim) with numpy. Raises
  DataError for another magic number, a truncated file or bytes that are no IDX file."""
  with arrays.reading(f'IDX file {path}', 'an MNIST-format IDX file, gzip-compressed if named .gz'):
    with (gzip.open if path.name.endswith('.gz') else open)(arrays.a_file(path, 'an IDX file'), 'rb') as f:
      data = f.read()
  ndim = magic - 0x0800
  found = int.from_bytes(data[:4], 'big')
  if len(data) < 4 + 4 * ndim or found != magic:
    raise DataError(f'{path}: IDX magic number {found}, expected {magic} (uint8, {ndim} dims); '
                    'is it an MNIST-format file, and images/labels named right?')
  dims = tuple(int(d) for d in np.frombuffer(data, '>u4', ndim, 4))
  values = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if values.size != math.prod(dims):
    raise DataError(f'{path}: header says {dims} but the file holds {values.size} values; '
                    'the file is truncated or corrupt, download it again.')
  return values.reshape(dims)
