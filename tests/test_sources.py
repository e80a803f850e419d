"""Data sources as plugins (aelab/data/sources): the registry, a source module copied outside the package
and named by its dotted path (trains, resumes, sweeps and loads like the built-in one), and one reader per
file source for the in-memory and the streamed path (the same arrays, the same errors)."""
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

import aelab
from aelab import config as config_lib
from aelab import data
from aelab.data import sources, stream
from aelab.train import sweep
from conftest import CACHE_DIR, ROOT, forget_modules, load_config

EPOCHS = 2


@pytest.fixture(autouse=True)
def _fresh_my_lab():
  """Each test imports its own ``my_lab`` folder (see ``conftest.forget_modules``)."""
  forget_modules('my_lab')
  yield
  forget_modules('my_lab')


def _digits_npz(path: pathlib.Path) -> pathlib.Path:
  """scikit-learn's digits as a uint8 npz of images (N x 8 x 8, values 0..255) and labels."""
  from sklearn import datasets  # noqa: PLC0415
  digits = datasets.load_digits()
  np.savez(path, x=(digits.images * 15).astype(np.uint8), y=digits.target)
  return path


@pytest.fixture(scope='module')
def plugin(tmp_path_factory):
  """``my_lab.npz_copy``: aelab/data/sources/npz.py copied unchanged outside the package, and an npz."""
  root = tmp_path_factory.mktemp('plugin')
  (root / 'my_lab').mkdir()
  (root / 'my_lab' / '__init__.py').write_text('')
  shutil.copy(ROOT / 'aelab' / 'data' / 'sources' / 'npz.py', root / 'my_lab' / 'npz_copy.py')
  return root, _digits_npz(root / 'digits.npz')


def _main(root: pathlib.Path, npz: pathlib.Path, workdir: pathlib.Path, name: str, epochs: int, *extra: str) -> dict:
  """Runs ``python -m aelab.main`` on configs/ae.py:npz=FILE with data.name=name; returns its summary.json
  (the sweep's index for --sweep)."""
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), str(root)]), 'AELAB_TEST_CACHE': CACHE_DIR}
  command = [sys.executable, '-m', 'aelab.main', f'--config=configs/ae.py:npz={npz}', f'--config.data.name={name}',
             f'--config.train.num_epochs={epochs}', '--config.train.figures_every=0',
             f'--config.train.compilation_cache_dir={CACHE_DIR}', f'--workdir={workdir}', *extra]
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads((workdir / ('sweep.json' if extra else 'summary.json')).read_text())


def _metrics(summary: dict) -> dict:
  return {k: v for k, v in summary.items() if k.startswith(('train/', 'test/'))}


def test_registry_names_every_source_and_its_contract():
  assert set(sources.available()) == {'digits', 'idx', 'npz', 'csv', 'images', 'tfds', 'shapes2d', 'superposition',
                                      'dsprites', 'shapes3d', 'mpi3d', 'cars3d', 'activations'}
  for name in sources.available():
    module = sources.module(name)
    assert module.__name__ == f'aelab.data.sources.{name}'
    assert all(isinstance(meaning, str) and meaning for _, meaning in module.CONFIG.values())
  assert sources.module('fashion_mnist') is sources.module('tfds')  # any other plain name is tfds's
  from aelab.data import superposition  # noqa: PLC0415
  assert set(sources.module('superposition').CONFIG) == {f.name for f in dataclasses.fields(superposition.Spec)}
  schema = sources.schema()
  assert schema['data.shapes2d']['counts'][0] == (3, 6, 40, 32, 32)
  assert set(schema['data.images']) == {'size', 'channels'} and schema['data.tfds']['data_dir'][0] is None
  base = config_lib.base().data
  for section, fields in schema.items():  # the base config holds every field with the schema's default
    node = base if section == 'data' else base[section.split('.')[1]]
    assert {k: node[k] for k in fields} == {k: d for k, (d, _) in fields.items()}, section


def test_a_module_path_that_is_no_source_is_a_config_error(tmp_path, monkeypatch):
  with pytest.raises(config_lib.ConfigError, match='no importable module.*PYTHONPATH'):
    sources.module('my_missing_lab.source')
  (tmp_path / 'half_lab').mkdir()
  (tmp_path / 'half_lab' / '__init__.py').write_text('')
  (tmp_path / 'half_lab' / 'source.py').write_text('SECTION = None\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(config_lib.ConfigError, match=r"lacks \['CONFIG', 'PATH', 'validate', 'adapt', 'read'\]"):
    sources.module('half_lab.source')


def test_npz_copied_outside_the_package_trains_resumes_sweeps_and_loads(plugin, tmp_path, monkeypatch):
  root, npz = plugin
  built_in = _main(root, npz, tmp_path / 'npz', 'npz', EPOCHS + 1)
  _main(root, npz, tmp_path / 'copy', 'my_lab.npz_copy', EPOCHS)
  resumed = _main(root, npz, tmp_path / 'copy', 'my_lab.npz_copy', EPOCHS + 1)  # continues from epoch 2
  lines = [json.loads(line) for line in (tmp_path / 'copy' / 'metrics.jsonl').read_text().splitlines()]
  assert sorted({line['epoch'] for line in lines if 'epoch' in line}) == [1, 2, 3]
  assert _metrics(resumed) == pytest.approx(_metrics(built_in), rel=1e-6, abs=1e-7) and _metrics(resumed)
  sweep_file = tmp_path / 'lr.py'
  sweep_file.write_text('def get_sweep(arg=None):\n'
                        "  return [{'optimizer.learning_rate': 1e-3}, {'optimizer.learning_rate': 2e-3}]\n")
  index = _main(root, npz, tmp_path / 'sweep', 'my_lab.npz_copy', EPOCHS + 1, f'--sweep={sweep_file}')
  runs = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / 'sweep').glob('*/summary.json')}
  assert len(runs) == 2 and index
  first = runs[sweep.run_name({'optimizer.learning_rate': 1e-3})]  # the single run's config, vmapped with another
  np.testing.assert_allclose([first[k] for k in _metrics(built_in)], list(_metrics(built_in).values()), rtol=2e-5,
                             atol=1e-6)
  assert runs[sweep.run_name({'optimizer.learning_rate': 2e-3})]['train/loss'] != built_in['train/loss']
  monkeypatch.syspath_prepend(str(root))
  trained = aelab.load(str(tmp_path / 'copy'))
  assert trained.epoch == EPOCHS + 1 and trained.config.data.name == 'my_lab.npz_copy'
  x = data.load(trained.config.data).x_test[:5]
  assert trained.reconstruct(x).shape == x.shape


def _both(config: ml_collections.ConfigDict) -> tuple[data.Dataset, data.Dataset]:
  """data.load and stream.load (streamed) of one data config."""
  streamed = config.copy_and_resolve_references()
  streamed.stream = True
  return data.load(config), stream.load(streamed)


def _idx(path: pathlib.Path, x: np.ndarray, y: np.ndarray) -> pathlib.Path:
  """A directory with one MNIST-format IDX images file (N x H x W uint8) and its labels."""
  path.mkdir()
  for name, array, magic in (('images-idx3-ubyte', x[..., 0], 2051), ('labels-idx1-ubyte', y.astype(np.uint8), 2049)):
    header = magic.to_bytes(4, 'big') + np.asarray(array.shape, '>u4').tobytes()
    (path / name).write_bytes(header + array.tobytes())
  return path


@pytest.mark.parametrize('layout', ['npz', 'npy', 'compressed', 'test_path', 'float', 'idx'])
def test_in_memory_and_streamed_reads_give_the_same_arrays(tmp_path, layout):
  rng = np.random.default_rng(0)
  x, y = rng.integers(0, 256, (120, 6, 5, 1), np.uint8), rng.integers(0, 10, 120)
  x = x.astype(np.float32) / 255 if layout == 'float' else x
  path = tmp_path / ('x.npy' if layout == 'npy' else 'x.npz')
  (np.save(path, x) if layout == 'npy' else np.savez_compressed(path, x=x, y=y) if layout == 'compressed'
   else np.savez(path, x=x, y=y))
  config = load_config('vae', f'idx={_idx(tmp_path / "idx", x, y)}' if layout == 'idx' else f'npz={path}').data
  if layout == 'test_path':
    np.savez(tmp_path / 't.npz', x=x[:30], y=y[:30])
    config.test_path = str(tmp_path / 't.npz')
  loaded, streamed = _both(config)
  assert isinstance(streamed.train, stream.Stream) and streamed.shape == loaded.shape == (6, 5, 1)
  rows = np.arange(len(loaded.train))
  np.testing.assert_array_equal(data.to_float32(streamed.train.read(rows), 255), loaded.x_train)
  np.testing.assert_array_equal(streamed.x_test, loaded.x_test)
  np.testing.assert_array_equal(streamed.y_test, loaded.y_test)


def _errors(config: ml_collections.ConfigDict) -> list[tuple[type, str]]:
  """The exception type and message of data.load and of stream.load (streamed) of one config."""
  found = []
  for load in (data.load, stream.load):
    streamed = config.copy_and_resolve_references()
    streamed.stream = load is stream.load
    with pytest.raises(data.DataError) as info:
      load(streamed)
    found.append((type(info.value), str(info.value)))
  return found


def test_in_memory_and_streamed_reads_raise_the_same_errors(tmp_path):
  x = np.random.default_rng(0).random((50, 4, 4)).astype(np.float32)
  missing = load_config('vae', f'npz={tmp_path / "missing.npz"}').data
  (kind, message), streamed = _errors(missing)
  assert kind is data.DataNotFoundError and issubclass(kind, FileNotFoundError) and streamed == (kind, message)
  (tmp_path / 'text.npz').write_text('hello world\n')
  not_npz = _errors(load_config('vae', f'npz={tmp_path / "text.npz"}').data)
  assert not_npz[0] == not_npz[1] and 'not an .npz archive' in not_npz[0][1]
  np.savez(tmp_path / 'other.npz', images=x)
  no_x = _errors(load_config('vae', f'npz={tmp_path / "other.npz"}').data)
  assert no_x[0] == no_x[1] and "no array 'x'" in no_x[0][1]
  x[:, 0, 0] = np.nan
  np.savez(tmp_path / 'nan.npz', x=x)
  nan = _errors(load_config('vae', f'npz={tmp_path / "nan.npz"}').data)
  assert all(kind is data.DataError and 'NaN' in message for kind, message in nan)
  folder = _errors(load_config('vae', f'images={tmp_path / "no_folder"}').data)
  assert folder[0] == folder[1] and folder[0][0] is data.DataNotFoundError


def test_tabular_sources_do_not_stream_and_csv_adapts_the_config(tmp_path):
  np.savetxt(tmp_path / 't.csv', np.random.default_rng(0).random((40, 3)), delimiter=',')
  config = load_config('ae', f'csv={tmp_path / "t.csv"}')
  assert (config.model.output_activation, config.corruption.clip) == ('identity', False)  # csv's adapt
  assert load_config('vae', f'csv={tmp_path / "t.csv"}').model.likelihood == 'gaussian'
  config.data.stream = True
  with pytest.raises(data.DataError, match='tabular: set data.stream=False'):
    stream.load(config.data)


def test_source_sections_are_validated():
  config = load_config('vae', 'shapes2d')
  assert (config.model.hidden, config.optimizer.learning_rate) == ((1200, 1200), 1e-4)  # shapes2d's adapt
  config.data.shapes2d.counts = (4, 3, 4, 5, 5)
  with pytest.raises(config_lib.ConfigError, match=r'data.shapes2d.counts / data.shapes2d.size: shapes2d has 3'):
    config_lib.validate(config)
  with pytest.raises(config_lib.ConfigError, match='data.tfds.data_dir=3 must be a path'):
    sources.module('mnist').validate(ml_collections.ConfigDict(dict(name='mnist', tfds=dict(data_dir=3))))
  with pytest.raises(config_lib.ConfigError, match='reads no path'):
    load_config('vae', 'digits=some/file')
  with pytest.raises(config_lib.ConfigError, match='needs a path'):
    load_config('vae', 'npz')


def test_a_source_read_into_memory_streams_its_loaded_arrays():
  config = load_config('vae').data  # digits: uint8 0..16, read into memory by its source
  loaded, streamed = _both(config)
  assert isinstance(streamed.train, stream.Stream)
  np.testing.assert_array_equal(streamed.train.read(np.arange(len(loaded.train))), loaded.train)  # as stored
  assert streamed.x_max == loaded.x_max == 16 and streamed.test.dtype == loaded.test.dtype == np.uint8
  np.testing.assert_array_equal(streamed.x_test, loaded.x_test)
