"""``data.name=images``: a folder of PNG / JPEG files (``data.path``; labels from class subfolders, see
``aelab.data.images``), each decoded with Pillow and resized to ``data.images.size`` with
``data.images.channels``. One split, held out by ``data.test_fraction``. The streamed path decodes each
image as it is read."""
from typing import Any

import numpy as np

from aelab.data import arrays
from aelab.errors import ConfigError

SECTION = 'images'
CONFIG: dict[str, tuple[Any, str]] = {
    'size': (0, 'height and width in pixels (an int: square) every image is resized to; 0: the first image\'s'),
    'channels': (0, '1 (grey) or 3 (colour); 0: 1 if the first image is greyscale, else 3'),
}
PATH = 'a folder of PNG / JPEG images, one subfolder per class for labels'


def validate(data_config: Any) -> None:
  """Raises ConfigError for a size that is not an int >= 0 (or a pair) or channels other than 0, 1, 3."""
  fields = arrays.section(data_config, SECTION, CONFIG)
  size, channels = fields['size'], fields['channels']
  pair = (size,) * 2 if isinstance(size, int) else tuple(size)
  if not (len(pair) == 2 and all(isinstance(s, int) and s >= 0 for s in pair) and (all(pair) or not any(pair))):
    raise ConfigError(f'data.images.size={size!r} must be an int (square) or (height, width) in pixels, or 0 for '
                      'the size of the first image.')
  if channels not in (0, 1, 3):
    raise ConfigError(f'data.images.channels={channels!r} is not valid; choose one of (0, 1, 3) (1 grey, 3 colour, '
                      '0 from the first image).')


def adapt(config: Any) -> Any:
  """The config unchanged."""
  return config


def read(data_config: Any) -> arrays.Read:
  """The folder as a reader of uint8 H x W x C images. Raises DataNotFoundError (no folder), DataError (no
  images, an unreadable file, a bad size or channel count)."""
  from aelab.data import images  # noqa: PLC0415  (Pillow: only when images are read)
  directory = arrays.required_path(data_config, PATH)
  fields = arrays.section(data_config, SECTION, CONFIG)
  folder = images.ImageFolder(directory, fields['size'], fields['channels'])
  where = f'image folder {folder.root}'
  return arrays.Read(arrays.Split(FolderReader(folder, where), where), None, 'image')


class FolderReader(arrays.Reader):
  """An ``aelab.data.images.ImageFolder`` as a reader: uint8 R x H x W x C images and int32 labels (or None)."""

  def __init__(self, folder: Any, where: str):
    self.folder, self.where = folder, where

  def __len__(self) -> int:
    return len(self.folder)

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    from aelab.data import images  # noqa: PLC0415
    if rows_R is None:
      x, y = images.load_folder(self.folder)  # decoded on several threads
    else:
      x = np.stack([images.decode(self.folder.files[int(i)], self.folder.size_hw, self.folder.channels)
                    for i in rows_R])
      y = None if self.folder.labels is None else self.folder.labels[rows_R]
    return arrays.images(x, self.where), y
