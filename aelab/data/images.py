"""A folder of PNG / JPEG images as a dataset source (``data.name='images'``, ``data.path=DIR``).

Layout: either image files directly in ``DIR`` (no labels), or one subfolder per class
(``DIR/cat/*.png``, ``DIR/dog/*.jpg``; files found at any depth below a class folder), labelled
``0 .. C-1`` in the sorted order of the subfolder names. Every image is decoded with Pillow, converted
to grey (``channels=1``, Pillow mode ``L``) or colour (``channels=3``, ``RGB``) and resized to
``image_size`` (bilinear, antialiased when shrinking) unless it already has that size.

:class:`ImageFolder` is a random-access source: ``len(source)`` and ``source[i] -> {'image': uint8
H x W x C, 'label': int}`` (no ``'label'`` without class subfolders), the protocol of grain's
``RandomAccessDataSource``, so a streaming pipeline reads the folder one record at a time.
:func:`load_folder` reads all of it into memory (``aelab.data`` does, for ``data.name='images'``).
"""
import concurrent.futures
import os
import pathlib
from typing import Any

import numpy as np
from PIL import Image

from aelab.errors import DataError

SUFFIXES = ('.png', '.jpg', '.jpeg')
_MODES = {1: 'L', 3: 'RGB'}
_GREY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16L', 'I;16B', 'I;16N', 'P')  # P: when its palette is grey
_16_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')  # 16-bit grey PNGs (older Pillow: 'I')
_8_BIT_MODES = ('1', 'L', 'LA', 'La', 'P', 'PA', 'RGB', 'RGBA', 'RGBa', 'RGBX', 'CMYK', 'YCbCr', 'LAB', 'HSV')


def _image_files(directory: pathlib.Path) -> list[pathlib.Path]:
  """PNG / JPEG files (any case of the suffix) at any depth below ``directory``, sorted."""
  return sorted(p for p in directory.rglob('*') if p.is_file() and p.suffix.lower() in SUFFIXES)


def scan(root: str | os.PathLike) -> tuple[list[pathlib.Path], np.ndarray | None, list[str]]:
  """``(files, labels int32 [N] or None, class_names)`` of an image folder (see the module docstring).

  Raises:
    FileNotFoundError: ``root`` does not exist.
    DataError: ``root`` is no directory, holds no PNG / JPEG file, or mixes images directly in
      ``root`` with class subfolders.
  """
  root = pathlib.Path(root).expanduser()
  if not root.exists():
    raise FileNotFoundError(f'{root} does not exist; expected a folder of PNG / JPEG images.')
  if not root.is_dir():
    raise DataError(f'data.path={root} is not a directory; data.name=images reads a folder of PNG / JPEG '
                    'images (one subfolder per class for labels).')
  classes = sorted(d.name for d in root.iterdir() if d.is_dir() and _image_files(d))
  loose = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
  if not classes and not loose:
    raise DataError(f'{root} holds no image files ({", ".join(SUFFIXES)}, at any depth); point '
                    'data.path at a folder of images.')
  if classes and loose:
    raise DataError(f'{root} holds both images ({loose[0].name}, ...) and class subfolders ({classes}); move '
                    'the images into a class subfolder, or remove the subfolders for unlabelled data.')
  if not classes:
    return loose, None, []
  files, labels = [], []
  for label, name in enumerate(classes):
    found = _image_files(root / name)
    files += found
    labels += [label] * len(found)
  return files, np.asarray(labels, np.int32), classes


def _open(path: pathlib.Path) -> Image.Image:
  """The decoded image; raises DataError naming the file when Pillow cannot read it."""
  try:
    with Image.open(path) as image:
      image.load()  # decodes now: a truncated file fails here, not later
      return image.copy()
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f'cannot read image {path}: {e}. Delete or replace the file (is it a complete '
                    'PNG / JPEG?).') from None


def _is_grey(image: Image.Image) -> bool:
  if image.mode == 'P':
    rgb = np.asarray(image.convert('RGB'))
    return bool(np.all(rgb[..., :1] == rgb))
  return image.mode in _GREY_MODES


def to_8_bit(image: Image.Image, path: pathlib.Path) -> Image.Image:
  """``image`` in a Pillow mode of 8 bits per channel that ``convert('L' / 'RGB')`` maps faithfully: a
  16-bit grey image (mode ``I;16*``, or ``I`` with values in [0, 65535]) scaled by 255 / 65535 and rounded
  (Pillow's own ``convert('L')`` clips it at 255, so almost every pixel would be white); the 8-bit modes
  as they are. Raises DataError naming the file and its mode for any other mode (e.g. ``F``, or ``I``
  outside the 16-bit range)."""
  if image.mode in _16_BIT_MODES:
    x_HxW = np.asarray(image).astype(np.int64)
    if x_HxW.size and (x_HxW.min() < 0 or x_HxW.max() > 65535):
      raise DataError(f'image {path} has Pillow mode {image.mode} with values in [{x_HxW.min()}, {x_HxW.max()}], '
                      'outside the 16-bit range [0, 65535]: save it as an 8-bit or 16-bit PNG.')
    return Image.fromarray(np.round(x_HxW * (255 / 65535)).astype(np.uint8), 'L')
  if image.mode not in _8_BIT_MODES:
    raise DataError(f'image {path} has Pillow mode {image.mode!r}, which aelab does not decode: save it as an '
                    '8-bit grey or colour PNG / JPEG, or a 16-bit grey PNG.')
  return image


def decode(path: pathlib.Path, size_hw: tuple[int, int], channels: int) -> np.ndarray:
  """One image file as uint8 ``H x W x C`` (``size_hw``, ``channels`` 1 or 3; 16-bit grey scaled to 8
  bits, :func:`to_8_bit`). Raises DataError naming the file when it cannot be decoded or its mode is not
  one aelab decodes."""
  image = to_8_bit(_open(path), path).convert(_MODES[channels])
  if image.size != (size_hw[1], size_hw[0]):  # Pillow sizes are (width, height)
    image = image.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
  return np.asarray(image, np.uint8).reshape(size_hw[0], size_hw[1], channels)


class ImageFolder:
  """Random-access source over an image folder (grain's ``RandomAccessDataSource`` protocol).

  Args:
    root: the folder (see the module docstring).
    image_size: ``H`` (square) or ``(H, W)`` in pixels; 0 or None: the size of the first image.
    channels: 1 (grey) or 3 (colour); 0 or None: 1 if the first image is greyscale, else 3.

  Raises:
    FileNotFoundError, DataError: as :func:`scan`; DataError for a bad ``image_size`` / ``channels``
    or an unreadable first image (other files raise DataError when read).
  """

  def __init__(self, root: str | os.PathLike, image_size: int | tuple[int, int] | None = None,
               channels: int | None = None):
    self.root = pathlib.Path(root).expanduser()
    self.files, self.labels, self.class_names = scan(self.root)
    first = _open(self.files[0]) if not (image_size and channels) else None
    self.size_hw = _size_hw(image_size, first)
    self.channels = channels or (1 if _is_grey(first) else 3)
    if self.channels not in _MODES:
      raise DataError(f'data.images.channels={channels} must be 1 (grey) or 3 (colour), or 0 for the first image\'s.')

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = {'image': decode(self.files[index], self.size_hw, self.channels)}
    if self.labels is not None:
      record['label'] = int(self.labels[index])
    return record

  def __repr__(self) -> str:
    return (f'ImageFolder({str(self.root)!r}, {len(self)} images, {self.size_hw[0]}x{self.size_hw[1]}x'
            f'{self.channels}, classes={self.class_names})')


def _size_hw(image_size: Any, first: Image.Image | None) -> tuple[int, int]:
  """``(H, W)`` from ``image_size`` (an int, a pair, or 0 / None for ``first``'s size)."""
  if not image_size:
    return first.size[1], first.size[0]
  size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
  if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
    raise DataError(f'data.images.size={image_size!r} must be a positive int (square) or (height, width), '
                    'or 0 for the size of the first image.')
  return size


def load_folder(source: ImageFolder, num_threads: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
  """All images of ``source`` in memory: ``(x uint8 N x H x W x C, y int32 [N] or None)``. Pillow
  decodes on ``num_threads`` threads (it releases the GIL). Raises DataError naming an unreadable file."""
  x = np.empty((len(source), *source.size_hw, source.channels), np.uint8)

  def fill(i: int) -> None:
    x[i] = decode(source.files[i], source.size_hw, source.channels)

  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    list(pool.map(fill, range(len(source))))  # re-raises the first error
  return x, source.labels
