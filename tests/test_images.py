"""Tests for aelab.data.images (a folder of PNG / JPEG files) and data.name='images'."""
import pathlib

import ml_collections
import numpy as np
import pytest
from PIL import Image

from aelab import config as config_lib, data

from aelab.data import images
from conftest import load_config


def _write(path: pathlib.Path, array: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _grey(seed: int, size=(8, 6)) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


@pytest.fixture
def labelled_grey(tmp_path) -> pathlib.Path:
  """10 grey 8x6 PNGs in class folders b/ (4) and a/ (6, two of them one level deeper)."""
  for i in range(4):
    _write(tmp_path / 'b' / f'{i}.png', _grey(i))
  for i in range(6):
    _write(tmp_path / 'a' / ('deep' if i < 2 else '') / f'{i}.PNG', _grey(10 + i))
  return tmp_path


def test_class_subfolders_give_sorted_labels_and_exact_pixels(labelled_grey):
  source = images.ImageFolder(labelled_grey)
  assert len(source) == 10 and source.class_names == ['a', 'b']
  assert source.size_hw == (8, 6) and source.channels == 1  # from the first image
  assert list(source.labels) == [0] * 6 + [1] * 4
  record = source[9]  # b/3.png: stored losslessly, not resized
  assert record['label'] == 1 and record['image'].dtype == np.uint8
  np.testing.assert_array_equal(record['image'][..., 0], _grey(3))
  x, y = images.load_folder(source, num_threads=3)
  assert x.shape == (10, 8, 6, 1) and x.dtype == np.uint8
  np.testing.assert_array_equal(x[9], record['image'])
  np.testing.assert_array_equal(y, source.labels)


def test_colour_without_subfolders_is_unlabelled_and_resized(tmp_path):
  rng = np.random.default_rng(0)
  colour = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(5)]
  for i, array in enumerate(colour):
    _write(tmp_path / f'{i}.png', array)
  _write(tmp_path / 'flat.jpg', np.full((20, 20, 3), (200, 10, 50), np.uint8))  # JPEG, another size
  source = images.ImageFolder(tmp_path, image_size=(6, 5), channels=3)
  assert len(source) == 6 and source.labels is None and 'label' not in source[0]
  assert source[0]['image'].shape == (6, 5, 3)
  flat = source[5]['image'].astype(int)  # a uniform image stays uniform (up to JPEG rounding)
  assert np.all(np.abs(flat - [200, 10, 50]) <= 3)
  grey = images.ImageFolder(tmp_path, image_size=4, channels=1)[0]['image']
  assert grey.shape == (4, 4, 1)


def test_data_load_images_holds_uint8_with_a_seeded_split(labelled_grey):
  cfg = ml_collections.ConfigDict(dict(name='images', path=str(labelled_grey), test_fraction=0.3,
                                       images=dict(size=4, channels=0)))
  ds = data.load(cfg)
  assert ds.train.shape == (7, 16) and ds.test.shape == (3, 16) and ds.train.dtype == np.uint8
  assert (ds.shape, ds.kind, ds.x_max) == ((4, 4, 1), 'image', 255)
  assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == [0] * 6 + [1] * 4
  again = data.load(cfg)
  np.testing.assert_array_equal(ds.train, again.train)
  assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1 and ds.x_train.dtype == np.float32


def test_config_arg_images_sets_name_and_path(labelled_grey):
  config = load_config('vae', f'images={labelled_grey}')
  assert (config.data.name, config.data.path) == ('images', str(labelled_grey))
  config_lib.validate(config)
  config.data.images.channels = 2
  with pytest.raises(config_lib.ConfigError, match='data.images.channels'):
    config_lib.validate(config)


def test_broken_file_is_named(labelled_grey):
  broken = labelled_grey / 'a' / 'broken.png'
  broken.write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
  with pytest.raises(data.DataError, match='broken.png'):
    data.load(ml_collections.ConfigDict(dict(name='images', path=str(labelled_grey), images=dict(size=8, channels=1))))


def test_truncated_png_is_named(tmp_path):
  _write(tmp_path / 'ok.png', _grey(0, (32, 32)))
  whole = (tmp_path / 'ok.png').read_bytes()
  (tmp_path / 'cut.png').write_bytes(whole[:len(whole) // 2])
  with pytest.raises(data.DataError, match='cut.png'):
    images.load_folder(images.ImageFolder(tmp_path, 8, 1))


def test_empty_and_imageless_folders_and_mixtures_are_clear_errors(tmp_path):
  with pytest.raises(data.DataError, match='no image files'):
    images.ImageFolder(tmp_path)
  (tmp_path / 'notes.txt').write_text('no images here')
  (tmp_path / 'sub').mkdir()
  with pytest.raises(data.DataError, match='no image files'):
    images.ImageFolder(tmp_path)
  _write(tmp_path / 'sub' / '0.png', _grey(0))
  _write(tmp_path / 'loose.png', _grey(1))
  with pytest.raises(data.DataError, match='both images'):
    images.ImageFolder(tmp_path)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    images.ImageFolder(tmp_path / 'missing')
  with pytest.raises(data.DataError, match='not a directory'):
    images.ImageFolder(tmp_path / 'loose.png')
  with pytest.raises(data.DataError, match='data.images.size'):
    images.ImageFolder(tmp_path / 'sub', image_size=-3, channels=1)


# ---- issue 20, finding 2: images decode faithfully ----

def test_16_bit_pngs_are_scaled_to_the_unit_interval_not_clipped(tmp_path):
  gradient_HxW = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
  _write(tmp_path / 'g.png', gradient_HxW)
  assert Image.open(tmp_path / 'g.png').mode == 'I;16'
  source = images.ImageFolder(tmp_path)
  x_HxW = source[0]['image'][..., 0]
  assert source.channels == 1 and x_HxW.dtype == np.uint8
  np.testing.assert_array_equal(x_HxW, np.round(gradient_HxW * (255 / 65535)).astype(np.uint8))
  assert len(np.unique(x_HxW)) == 256  # was 2: convert('L') clipped at 255
  assert abs(x_HxW.mean() / 255 - gradient_HxW.mean() / 65535) < 2e-3  # was 0.998 (white)
  colour = images.decode(tmp_path / 'g.png', (64, 64), 3)
  np.testing.assert_array_equal(colour, np.repeat(x_HxW[..., None], 3, axis=-1))


@pytest.mark.parametrize('mode', ['1', 'L', 'LA', 'P', 'RGB', 'RGBA'])
def test_every_png_mode_decodes_to_its_grey_or_colour_pixels(tmp_path, mode):
  rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
  image = Image.fromarray(rgb).convert(mode)
  image.save(tmp_path / 'x.png')
  assert Image.open(tmp_path / 'x.png').mode == mode
  np.testing.assert_array_equal(images.decode(tmp_path / 'x.png', (6, 5), 1)[..., 0], np.asarray(image.convert('L')))
  np.testing.assert_array_equal(images.decode(tmp_path / 'x.png', (6, 5), 3), np.asarray(image.convert('RGB')))


def test_a_mode_aelab_does_not_decode_is_refused_naming_file_and_mode(tmp_path):
  with pytest.raises(data.DataError, match=r"^image .*x.tif has Pillow mode 'F', which aelab does not decode"):
    images.to_8_bit(Image.new('F', (4, 4)), tmp_path / 'x.tif')
  with pytest.raises(data.DataError, match=r'x.png has Pillow mode I with values in \[-5, -5\], outside the 16-bit'):
    images.to_8_bit(Image.fromarray(np.full((2, 2), -5, np.int32), 'I'), tmp_path / 'x.png')
