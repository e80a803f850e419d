"""The disentanglement benchmarks' sources (dsprites, shapes3d, mpi3d, cars3d, tfds' label_* datasets), each
on small files written here in the publisher's exact format: their factors reach ``Dataset.extras`` and the
metrics, in memory and streamed, and each malformed file (another format, a missing key, a wrong shape, a
truncated file) ends in one ``error:`` line naming the file, the key and the expected shape."""
import itertools
import json

import h5py
import ml_collections
import numpy as np
import pytest
import scipy.io

from aelab import cli, config as config_lib, data
from aelab.data import factors, shapes2d as grids, stream
from aelab.data.sources import shapes2d
from aelab.eval import disentanglement

COUNTS_3D = (2, 2, 2, 2, 2, 3)  # floor, wall, object hue, scale, shape, orientation (published: 10 10 10 8 4 15)
COUNTS_MPI3D = (2, 1, 2, 1, 1, 3, 2)  # published: 6 6 2 3 3 40 40


def load(stream_it: bool = False, **fields) -> data.Dataset:
  return stream.load(ml_collections.ConfigDict({'stream': stream_it, **fields}))


def grid_of(counts) -> np.ndarray:
  """Every combination of ``counts``, the last factor fastest (the publishers' row order)."""
  return np.array(list(itertools.product(*map(range, counts))))


def write_3dshapes(path, n_rows: int | None = None, **replace) -> np.ndarray:
  """A 3dshapes.h5 of the grid COUNTS_3D: ``images`` uint8 N x 64 x 64 x 3 and ``labels`` float64 N x 6 holding
  the published factor values (hues in [0, 1), scale 0.75..1.25, shape 0..3, orientation -30..30)."""
  values = [np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10), np.linspace(0.75, 1.25, 8),
            np.arange(4.0), np.linspace(-30, 30, 15)]
  grid = grid_of(COUNTS_3D)
  members = {'images': np.random.default_rng(0).integers(0, 256, (len(grid), 64, 64, 3), dtype=np.uint8),
             'labels': np.stack([values[k][grid[:, k]] for k in range(6)], 1), **replace}
  with h5py.File(path, 'w') as f:
    for key, array in members.items():
      f.create_dataset(key, data=array[:n_rows])
  return members['images']


def write_mesh(path, im: np.ndarray) -> None:
  scipy.io.savemat(path, {'im': im})


@pytest.fixture(scope='module')
def dsprites_file(tmp_path_factory):
  path = tmp_path_factory.mktemp('dsprites') / 'dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz'
  shapes2d.write_dsprites(path, (3, 2, 4, 4, 4))
  return path


# ---- dSprites ----

def test_write_dsprites_is_the_published_format(dsprites_file):
  with np.load(dsprites_file) as f:
    assert (f['imgs'].dtype, f['imgs'].shape, set(np.unique(f['imgs']))) == (np.uint8, (384, 64, 64), {0, 1})
    assert f['latents_classes'].dtype == np.int64 and f['latents_values'].shape == (384, 6)
    assert np.array_equal(f['latents_classes'][:, 0], np.zeros(384)) and f['latents_values'][:, 0].max() == 1
    assert np.array_equal(f['latents_classes'][:, 1:], grids.Shapes2D((3, 2, 4, 4, 4), 64).all_factors())
    assert f['latents_values'][:, 2].min() == 0.5 and f['latents_values'][:, 2].max() == 1.0  # scale


@pytest.mark.parametrize('stream_it', [False, True])
def test_dsprites_factors_reach_the_extras(dsprites_file, stream_it):
  ds = load(stream_it, name='dsprites', path=str(dsprites_file))
  assert ds.extras['factor_counts'] == (3, 2, 4, 4, 4)  # color (one value) dropped, as disentanglement_lib
  assert ds.extras['factor_names'] == ('shape', 'scale', 'orientation', 'pos_x', 'pos_y')
  g = grids.Shapes2D((3, 2, 4, 4, 4), 64)
  f_test = ds.extras['factors_test']
  assert np.allclose(ds.to_float32(ds.test), g.images(f_test)) and np.array_equal(ds.y_test, f_test[:, 0])
  x_train = ds.train.read(np.arange(len(ds.train))) if stream_it else ds.train
  assert np.allclose(ds.to_float32(x_train), g.images(ds.extras['factors_train']))
  sampler = ds.extras['factor_sampler']
  f = sampler.sample_factors(7, np.random.default_rng(0))
  assert np.array_equal(sampler.images(f) / 255, g.images(f))


def test_dsprites_end_to_end_writes_the_disentanglement_metrics(dsprites_file, tmp_path):
  from aelab.train import engine  # noqa: PLC0415
  config = config_lib.load(f'configs/beta_vae.py:dsprites={dsprites_file}')
  config.model.hidden = (32,)
  config.train.update(num_epochs=1, figures_every=0)
  config.eval.update(disent_points=200, score_points=(20, 10), dci_model='forest')
  engine.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
  summary = json.loads((tmp_path / 'summary.json').read_text())
  for key in ('mig', 'sap', 'dci_disentanglement', 'modularity', 'beta_vae_score', 'factor_vae_score'):
    assert 0.0 <= summary[f'test/{key}'] <= 1.0, key


# ---- 3dshapes, MPI3D, Cars3D ----

@pytest.mark.parametrize('stream_it', [False, True])
def test_shapes3d_streams_with_its_factors(tmp_path, stream_it):
  images = write_3dshapes(tmp_path / '3dshapes.h5')
  ds = load(stream_it, name='shapes3d', path=str(tmp_path / '3dshapes.h5'))
  assert type(ds.train).__name__ == ('Stream' if stream_it else 'ndarray')
  assert ds.extras['factor_counts'] == COUNTS_3D and ds.extras['factor_names'][4] == 'shape'
  rows_of = lambda f: np.ravel_multi_index(tuple(f.T), COUNTS_3D)  # noqa: E731
  x_test = np.round(ds.to_float32(ds.test) * 255)
  assert np.array_equal(x_test, images[rows_of(ds.extras['factors_test'])].reshape(len(ds.test), -1))
  if stream_it:
    assert np.array_equal(ds.extras['factors_train'], grid_of(COUNTS_3D)[ds.train.indices])
    assert np.array_equal(ds.train.read(np.array([3, 0, 5])), images[ds.train.indices[[3, 0, 5]]].reshape(3, -1))
  sampler, f = ds.extras['factor_sampler'], np.array([[1, 0, 1, 1, 0, 2], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
  assert np.array_equal(sampler.images(f), images[rows_of(f)].reshape(3, -1))


def test_shapes3d_is_streamed_automatically_above_the_limit(tmp_path):
  write_3dshapes(tmp_path / '3dshapes.h5')
  ds = load(name='shapes3d', path=str(tmp_path / '3dshapes.h5'), stream_above_mb=1.0)  # 96 images: 3.4 MB x 3
  assert type(ds.train).__name__ == 'Stream' and ds.extras['factors_train'].shape == (len(ds.train), 6)


def test_mpi3d_factors_come_from_the_row_index(tmp_path):
  n = int(np.prod(COUNTS_MPI3D))
  images = np.random.default_rng(1).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
  np.savez(tmp_path / 'mpi3d_toy.npz', images=images)
  ds = load(True, name='mpi3d', path=str(tmp_path / 'mpi3d_toy.npz'), mpi3d={'counts': COUNTS_MPI3D})
  assert ds.extras['factor_counts'] == COUNTS_MPI3D and len(ds.extras['factor_names']) == 7
  assert np.array_equal(ds.extras['factors_train'], grid_of(COUNTS_MPI3D)[ds.train.indices])
  f_test = ds.extras['factors_test']
  x_test = np.round(ds.to_float32(ds.test) * 255)
  assert np.array_equal(x_test, images[np.ravel_multi_index(tuple(f_test.T), COUNTS_MPI3D)].reshape(len(f_test), -1))
  assert np.array_equal(ds.y_test, f_test[:, 1])  # the label is the object's shape


def test_cars3d_reads_the_mat_folder_as_disentanglement_lib(tmp_path):
  from PIL import Image  # noqa: PLC0415
  rng = np.random.default_rng(2)
  meshes = [rng.integers(0, 256, (128, 128, 3, 24, 4), dtype=np.uint8) for _ in range(2)]
  for i, im in enumerate(meshes):
    write_mesh(tmp_path / f'car_{i + 1:03d}_mesh.mat', im)
  ds = load(name='cars3d', path=str(tmp_path))
  assert ds.extras['factor_counts'] == (4, 24, 2) and len(ds.train) + len(ds.test) == 192
  elevation, azimuth, car = 3, 17, 1
  picture = Image.fromarray(meshes[car][:, :, :, azimuth, elevation])
  picture.thumbnail((64, 64), Image.Resampling.LANCZOS)  # disentanglement_lib's _load_mesh
  x = ds.extras['factor_sampler'].images(np.array([[elevation, azimuth, car]]))
  assert np.array_equal(x.reshape(64, 64, 3), np.asarray(picture))
  row = np.flatnonzero((ds.extras['factors_test'] == [elevation, azimuth, car]).all(1))
  if len(row):
    assert np.array_equal(ds.test[row[0]].reshape(64, 64, 3), np.asarray(picture))


@pytest.mark.parametrize('name, subset, counts', [
    ('smallnorb', None, (5, 9, 18, 6)), ('tfds', 'dsprites', (3, 6, 40, 32, 32)),
    ('tfds', 'shapes3d', (10, 10, 10, 8, 4, 15))])
def test_tfds_label_features_are_the_factors(name, subset, counts):
  import tensorflow_datasets as tfds  # noqa: PLC0415
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = load(name=name, tfds={'name': subset, 'data_dir': None})
    streamed = load(True, name=name, tfds={'name': subset, 'data_dir': None})
  assert ds.extras['factor_counts'] == counts and len(ds.extras['factor_names']) == len(counts)
  assert np.array_equal(streamed.extras['factors_test'], ds.extras['factors_test'])
  f = ds.extras['factors_test']
  assert f.shape == (len(ds.test), len(counts)) and np.all(f < np.array(counts)) and np.array_equal(ds.y_test, f[:, 0])
  few = np.array(counts) <= disentanglement.NUM_BINS  # a factor as a code: I(z_k; v_k) = H(v_k), nats
  mi_KxK = disentanglement.mutual_info_matrix(f.astype(np.float64), f)
  assert np.allclose(np.diag(mi_KxK)[few], disentanglement.factor_entropy(f)[few])


def test_tfds_records_covering_a_subset_of_the_values_have_a_factor_sampler():
  import tensorflow_datasets as tfds  # noqa: PLC0415
  held = ((0, 3), (0, 4), (5,), (1, 2))  # smallnorb's category, elevation, azimuth, lighting: 8 of 4,860 combinations
  rng = np.random.default_rng(0)
  images = {f: rng.integers(0, 256, (96, 96, 1), dtype=np.uint8) for f in itertools.product(*held)}

  class Grid(list):  # tfds.data_source's records, with the dataset_info read() takes the features from
    def __init__(self, info):
      super().__init__({'image': x, 'image2': x, 'label_instance': 0, **dict(zip(
          ('label_category', 'label_elevation', 'label_azimuth', 'label_lighting'), f))} for f, x in images.items())
      self.dataset_info = info

  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=lambda b, *_, **__: Grid(
      b.info)):
    ds = load(name='smallnorb', tfds={'data_dir': None}, test_fraction=0.25)
  sampler = ds.extras['factor_sampler']
  assert [v.tolist() for v in sampler.values] == [list(h) for h in held] and sampler.counts == (5, 9, 18, 6)
  f = sampler.sample_factors(500, np.random.default_rng(1))
  assert all(set(f[:, k]) == set(held[k]) for k in range(4))  # only the values held, each drawn
  assert np.array_equal(sampler.images(f[:3]), np.stack([images[tuple(r)].ravel() for r in f[:3]]))
  lookup = {x.tobytes(): f for f, x in images.items()}  # the factors as the code: the scores' answer is 1
  encode = lambda x_NxD: np.array([lookup[np.asarray(x, np.uint8).tobytes()] for x in x_NxD], np.float64)  # noqa: E731
  score = disentanglement.beta_vae_score(encode, sampler, np.random.default_rng(2), 8, 40, 20)
  assert score['eval_accuracy'] == 1.0


def test_the_factor_sampler_needs_every_combination():
  reader = data.arrays.Rows(np.zeros((3, 2, 2, 1), np.uint8))
  with pytest.raises(data.DataError, match=r'1 of the 4 factor combinations \(2, 2\) have no image'):
    factors.FactorRows(reader, np.array([0, 1, 2]), (2, 2))
  with pytest.raises(data.DataError, match=r'2 of the 4 factor combinations \(2, 2\) have no image'):
    factors.FactorRows(reader, np.array([0, 8]), (3, 3))  # values 0 and 2 of each: (0, 2) and (2, 0) lack one
  full = factors.FactorRows(data.arrays.Rows(np.zeros((6, 2, 2, 1), np.uint8)), np.arange(6), (2, 3))
  assert np.array_equal(full.sample_factors(50, np.random.default_rng(3)), np.stack(  # a whole grid: as before
      [g.integers(0, c, 50) for g in [np.random.default_rng(3)] for c in (2, 3)], -1))
  assert 'factor_sampler' not in factors.extras(reader, np.array([0, 1, 2]), (2, 2), ('a', 'b'))


# ---- malformed files: one error line naming the file, the key and the expected shape ----

def _error_line(**fields) -> str:
  with pytest.raises(SystemExit) as info:
    with cli.reporting(debug=False):
      load(**fields)
  line = str(info.value.code)
  assert line.startswith('error: ') and '\n' not in line, line
  return line


def _dsprites(path, **members):
  grid = grids.Shapes2D((1, 1, 1, 2, 2), 64)
  classes = np.concatenate([np.zeros((4, 2), np.int64), grid.all_factors()[:, 1:]], 1)
  arrays = {'imgs': grid.draw(grid.all_factors()).astype(np.uint8), 'latents_classes': classes,
            'latents_values': classes.astype(np.float64), **members}
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize('members, expected', [
    ({'imgs': None}, "has no 'imgs'"),
    ({'latents_classes': None}, "has no 'latents_classes'"),
    ({'imgs': np.zeros((4, 32, 32), np.uint8)}, "'imgs' is uint8 4x32x32, expected uint8 Nx64x64"),
    ({'imgs': np.zeros((4, 64, 64), np.float32)}, "'imgs' is float32 4x64x64, expected uint8 Nx64x64"),
    ({'latents_classes': np.zeros((4, 5), np.int64)}, "'latents_classes' is int64 4x5, expected 4x6"),
])
def test_malformed_dsprites_files(tmp_path, members, expected):
  _dsprites(tmp_path / 'd.npz', **members)
  assert f"dsprites file {tmp_path / 'd.npz'}" in _error_line(name='dsprites', path=str(tmp_path / 'd.npz'))
  assert expected in _error_line(name='dsprites', path=str(tmp_path / 'd.npz'))


def test_truncated_and_foreign_dsprites_files(tmp_path, dsprites_file):
  whole = dsprites_file.read_bytes()
  (tmp_path / 'cut.npz').write_bytes(whole[:len(whole) // 2])
  line = _error_line(name='dsprites', path=str(tmp_path / 'cut.npz'))
  assert str(tmp_path / 'cut.npz') in line and 'imgs uint8 N x 64 x 64' in line
  write_3dshapes(tmp_path / 'other.h5')  # another format
  line = _error_line(name='dsprites', path=str(tmp_path / 'other.h5'))
  assert 'is not an .npz archive' in line and 'imgs uint8 N x 64 x 64' in line


@pytest.mark.parametrize('replace, n_rows, expected', [
    ({'labels': None}, None, "has no 'labels'"),
    ({'images': np.zeros((96, 64, 64), np.uint8)}, None, "'images' is uint8 96x64x64, expected uint8 Nx64x64x3"),
    ({'labels': np.zeros((96, 5))}, None, "'labels' is float64 96x5, expected 96x6"),
])
def test_malformed_3dshapes_files(tmp_path, replace, n_rows, expected):
  path = tmp_path / '3dshapes.h5'
  with h5py.File(path, 'w') as f:
    for key, array in {'images': np.zeros((96, 64, 64, 3), np.uint8), 'labels': np.zeros((96, 6)), **replace}.items():
      if array is not None:
        f.create_dataset(key, data=array)
  line = _error_line(name='shapes3d', path=str(path))
  assert f'3dshapes file {path}' in line and expected in line


def test_truncated_and_foreign_3dshapes_files(tmp_path, dsprites_file):
  write_3dshapes(tmp_path / 'whole.h5')
  whole = (tmp_path / 'whole.h5').read_bytes()
  (tmp_path / 'cut.h5').write_bytes(whole[:len(whole) // 2])
  line = _error_line(name='shapes3d', path=str(tmp_path / 'cut.h5'))
  assert str(tmp_path / 'cut.h5') in line and 'images uint8 N x 64 x 64 x 3' in line
  line = _error_line(name='shapes3d', path=str(dsprites_file))
  assert 'is no HDF5 file' in line and 'images uint8 N x 64 x 64 x 3' in line


def test_malformed_mpi3d_files(tmp_path):
  path = tmp_path / 'mpi3d_toy.npz'
  np.savez(path, x=np.zeros((12, 64, 64, 3), np.uint8))
  line = _error_line(name='mpi3d', path=str(path), mpi3d={'counts': COUNTS_MPI3D})
  assert f'mpi3d file {path}' in line and "has no 'images' (it has ['x'])" in line
  np.savez(path, images=np.zeros((10, 64, 64, 3), np.uint8))
  line = _error_line(name='mpi3d', path=str(path), mpi3d={'counts': COUNTS_MPI3D})
  assert "'images' is uint8 10x64x64x3, expected uint8 24x64x64x3" in line
  line = _error_line(name='mpi3d', path=str(path))
  assert 'expected uint8 1036800x64x64x3' in line  # the published shape
  np.savez(path, images=np.zeros((24, 64, 64, 3), np.uint8))
  (tmp_path / 'cut.npz').write_bytes(path.read_bytes()[:-50000])
  line = _error_line(name='mpi3d', path=str(tmp_path / 'cut.npz'), mpi3d={'counts': COUNTS_MPI3D})
  assert str(tmp_path / 'cut.npz') in line and 'images' in line


def test_malformed_cars3d_folders(tmp_path):
  write_mesh(tmp_path / 'car_001_mesh.mat', np.zeros((128, 128, 3, 24, 2), np.uint8))
  line = _error_line(name='cars3d', path=str(tmp_path))
  assert f"cars3d file {tmp_path / 'car_001_mesh.mat'}: 'im' is uint8 128x128x3x24x2, expected uint8 " \
         '128x128x3x24x4' in line
  scipy.io.savemat(tmp_path / 'car_001_mesh.mat', {'images': np.zeros(3)})
  assert "car_001_mesh.mat has no 'im'" in _error_line(name='cars3d', path=str(tmp_path))
  (tmp_path / 'car_001_mesh.mat').write_bytes(b'not a mat file at all' * 10)
  line = _error_line(name='cars3d', path=str(tmp_path))
  assert 'car_001_mesh.mat' in line and "'im' uint8 128 x 128 x 3 x 24 x 4" in line
  (tmp_path / 'empty').mkdir()
  assert 'holds no *_mesh.mat file' in _error_line(name='cars3d', path=str(tmp_path / 'empty'))


def test_cars3d_streamed_keeps_its_factors(tmp_path):
  write_mesh(tmp_path / 'car_001_mesh.mat', np.random.default_rng(3).integers(0, 256, (128, 128, 3, 24, 4), np.uint8))
  memory, streamed = load(name='cars3d', path=str(tmp_path)), load(True, name='cars3d', path=str(tmp_path))
  assert np.array_equal(streamed.extras['factors_train'], memory.extras['factors_train'])
  assert np.array_equal(streamed.train.read(np.arange(5)), memory.train[:5])  # as stored (uint8)


def test_the_command_line_names_a_malformed_file(tmp_path):
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  np.savez(tmp_path / 'mpi3d_toy.npz', images=np.zeros((10, 64, 64, 3), np.uint8))
  done = subprocess.run([sys.executable, '-m', 'aelab.main', f'--config=configs/vae.py:mpi3d={tmp_path}/mpi3d_toy.npz',
                         f'--workdir={tmp_path / "w"}'], capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and done.stderr == (
      f"error: mpi3d file {tmp_path}/mpi3d_toy.npz: 'images' is uint8 10x64x64x3, expected uint8 1036800x64x64x3; "
      'is it the published file?\n'), done.stderr
  assert not (tmp_path / 'w').exists()


def test_benchmark_configs_are_adapted(tmp_path):
  dsprites = config_lib.load(f'configs/beta_vae.py:dsprites={tmp_path}/d.npz')
  assert (dsprites.model.hidden, dsprites.model.latent_dim, dsprites.data.binarize) == ((1200, 1200), 10, 'none')
  for arg in (f'shapes3d={tmp_path}/3dshapes.h5', f'mpi3d={tmp_path}/m.npz', f'cars3d={tmp_path}'):
    assert config_lib.load(f'configs/beta_vae.py:{arg}').data.binarize == 'none', arg  # beta_vae.py: 'dynamic'
  assert config_lib.load('configs/beta_vae.py:tfds').data.tfds.name is None
