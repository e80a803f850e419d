"""``data.name=digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels 0..9), the
offline default. Values 0..16, stored as uint8 with ``x_max`` 16; one split (held out by
``data.test_fraction``). Source: Alpaydin and Kaynak 1998, UCI Optical Recognition of Handwritten Digits."""
import importlib.util
import pathlib
from typing import Any

from aelab.data import arrays

SECTION = None
CONFIG: dict[str, tuple[Any, str]] = {}
PATH = None


def validate(data_config: Any) -> None:
  """No fields of its own: nothing to check."""


def adapt(config: Any) -> Any:
  """The config unchanged."""
  return config


def read(data_config: Any) -> arrays.Read:
  """The 1,797 digits as uint8 N x 8 x 8 x 1 (0..16) with int32 labels.

  Read from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``, what
  ``sklearn.datasets.load_digits`` reads) without importing scikit-learn, which would cost a second of
  start-up (it imports scipy and pandas); where a scikit-learn release keeps that file elsewhere, through
  its public ``load_digits``. Raises DataNotFoundError when scikit-learn is not installed."""
  import numpy as np  # noqa: PLC0415
  where = 'sklearn digits'
  images_Nx8x8, labels_N = _digits()
  x = arrays.images(images_Nx8x8.astype(np.uint8), where)
  y = arrays.labels(labels_N.astype(np.int64), len(x), where)
  return arrays.Read(arrays.Split(arrays.Rows(x, y), where, 16), None, 'image')


def _digits() -> tuple[Any, Any]:
  """``(images_Nx8x8, labels_N)`` as ``load_digits`` gives them (float64)."""
  import numpy as np  # noqa: PLC0415
  spec = importlib.util.find_spec('sklearn')
  if spec is None or spec.origin is None:
    raise arrays.DataNotFoundError('data.name=digits reads the digits that scikit-learn ships, but scikit-learn '
                                   'is not installed here: pip install scikit-learn.')
  path = pathlib.Path(spec.origin).parent / 'datasets' / 'data' / 'digits.csv.gz'
  if path.is_file():
    rows_Nx65 = np.loadtxt(path, delimiter=',')
    return rows_Nx65[:, :-1].reshape(-1, 8, 8), rows_Nx65[:, -1]
  from sklearn import datasets  # noqa: PLC0415  (the public reader, where the file has moved)
  digits = datasets.load_digits()
  return digits.images, digits.target
