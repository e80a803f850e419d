"""``data.name=digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels 0..9), the
offline default. Values 0..16, stored as uint8 with ``x_max`` 16; one split (held out by
``data.test_fraction``). Source: Alpaydin and Kaynak 1998, UCI Optical Recognition of Handwritten Digits."""
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
  """The 1,797 digits as uint8 N x 8 x 8 x 1 (0..16) with int32 labels."""
  import numpy as np  # noqa: PLC0415
  from sklearn import datasets  # noqa: PLC0415  (heavy; only when digits are read)
  digits = datasets.load_digits()
  where = 'sklearn digits'
  x = arrays.images(digits.images.astype(np.uint8), where)
  return arrays.Read(arrays.Split(arrays.Rows(x, arrays.labels(digits.target, len(x), where)), where, 16), None,
                     'image')
