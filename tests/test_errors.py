"""A user's mistake ends in one ``error: ...`` line naming the file, field or value and what to do, exit
status 1, no traceback, no empty workdir (issue 12, finding 3); ``--debug`` shows the traceback."""
import errno
import gzip
import logging
import os
import re
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest
from absl import logging as absl_logging

from aelab import cli, config as config_lib, data

from aelab.train import engine, sweep, writers
from conftest import CACHE_DIR, ROOT, load_config, small


def load(**fields) -> data.Dataset:
  return data.load(ml_collections.ConfigDict(fields))


def write_idx_gz(path, images: np.ndarray) -> bytes:
  """The gzip-compressed bytes of a uint8 IDX images file (also written to ``path``)."""
  raw = (2051).to_bytes(4, 'big') + np.asarray(images.shape, '>u4').tobytes() + images.astype(np.uint8).tobytes()
  compressed = gzip.compress(raw)
  path.write_bytes(compressed)
  return compressed


# ---- data: every case of the finding is a DataError naming the file ----

@pytest.mark.parametrize('name', ['npz', 'csv', 'idx'])
def test_a_missing_path_is_a_data_error_naming_it(tmp_path, name):
  with pytest.raises(data.DataNotFoundError, match=f'{tmp_path}/nope does not exist; expected') as info:
    load(name=name, path=str(tmp_path / 'nope'))
  assert isinstance(info.value, data.DataError) and isinstance(info.value, FileNotFoundError)


def test_a_missing_test_path_is_a_data_error(tmp_path):
  np.savez(tmp_path / 'train.npz', x=np.ones((10, 3)))
  with pytest.raises(data.DataError, match='nope.npz does not exist'):
    load(name='npz', path=str(tmp_path / 'train.npz'), test_path=str(tmp_path / 'nope.npz'))


@pytest.mark.parametrize('name', ['npz', 'csv'])
def test_a_directory_given_as_a_file_is_named(tmp_path, name):
  (tmp_path / f'd.{name}').mkdir()
  with pytest.raises(data.DataError, match=f'd.{name} is a directory; expected .*give the file itself'):
    load(name=name, path=str(tmp_path / f'd.{name}'))


def test_truncated_and_garbage_gzip_idx_files_are_named(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (20, 4, 4))
  path = tmp_path / 'train-images-idx3-ubyte.gz'
  compressed = write_idx_gz(path, images)
  assert load(name='idx', path=str(tmp_path)).x_train.shape == (16, 16)  # the intact file loads
  path.write_bytes(compressed[:len(compressed) // 2])
  with pytest.raises(data.DataError, match=r'train-images-idx3-ubyte.gz could not be read \(EOFError'):
    load(name='idx', path=str(tmp_path))
  path.write_bytes(np.random.default_rng(1).bytes(300))
  with pytest.raises(data.DataError, match=r'could not be read \(BadGzipFile: Not a gzipped file'):
    load(name='idx', path=str(tmp_path))


@pytest.mark.parametrize('content, message', [
    (b'hello world\n1,2,3\n', r"starts with b'hell', not b'PK\\x03\\x04': it is not an .npz archive"),
    (b'', r'is empty \(0 bytes\): it is not an .npz archive'),
])
def test_a_text_or_empty_file_named_npz_is_not_an_archive(tmp_path, content, message):
  (tmp_path / 'd.npz').write_bytes(content)
  with pytest.raises(data.DataError, match=message):
    load(name='npz', path=str(tmp_path / 'd.npz'))


@pytest.mark.parametrize('x, message', [
    (np.array([[1, 'a'], [2, 'b']], dtype=object), r"array 'x' holds Python objects \(dtype object\)"),
    (np.zeros((100, 0), np.float32), r'examples of shape \(0,\) hold no values'),
    (np.ones((50, 3)) + 1j, r'real-valued N x D array, got complex128 \(50, 3\) \(complex values: store'),
    (np.zeros((20, 4, 0), np.uint8), r'examples of shape \(4, 0, 1\) hold no values'),
])
def test_object_complex_and_empty_feature_arrays_are_refused(tmp_path, x, message):
  np.savez(tmp_path / 'd.npz', x=x)
  with pytest.raises(data.DataError, match=message):
    load(name='npz', path=str(tmp_path / 'd.npz'))


def test_a_csv_with_only_a_label_column_has_no_features(tmp_path):
  (tmp_path / 'd.csv').write_text('label\n' + ''.join(f'{i % 3}\n' for i in range(30)))
  with pytest.raises(data.DataError, match=r'hold no values.*a feature column besides label'):
    load(name='csv', path=str(tmp_path / 'd.csv'))


def test_a_binary_file_named_csv_is_named(tmp_path):
  (tmp_path / 'd.csv').write_bytes(bytes(range(128, 256)) * 4)
  with pytest.raises(data.DataError, match=r"d.csv could not be read \(UnicodeDecodeError: 'utf-8' codec"):
    load(name='csv', path=str(tmp_path / 'd.csv'))


# ---- config and sweep files ----

def test_a_sweep_file_with_a_syntax_error_names_file_and_line(tmp_path):
  (tmp_path / 's.py').write_text('def get_sweep(arg=None):\n  return [{"seed": 1}\n')
  with pytest.raises(config_lib.ConfigError, match=r"s.py failed to load: SyntaxError at line 2: '\[' was never"):
    sweep.load(str(tmp_path / 's.py'))


def test_a_get_sweep_that_raises_is_named(tmp_path):
  (tmp_path / 's.py').write_text('def get_sweep(arg=None):\n  return [{"seed": s} for s in range(int(arg))]\n')
  assert len(sweep.load(f'{tmp_path / "s.py"}:3')) == 3
  with pytest.raises(config_lib.ConfigError, match=r"get_sweep\('x'\) of sweep file .*s.py raised ValueError: "
                                                   'invalid literal'):
    sweep.load(f'{tmp_path / "s.py"}:x')


def test_a_config_file_that_fails_is_a_config_error(tmp_path):
  (tmp_path / 'c.py').write_text('import nonexistent_module_xyz\n')
  with pytest.raises(config_lib.ConfigError, match=r"c.py failed to load: ModuleNotFoundError: No module named"):
    config_lib.load(str(tmp_path / 'c.py'))
  (tmp_path / 'c.py').write_text('def get_config(arg=None):\n  return 1 / 0\n')
  with pytest.raises(config_lib.ConfigError, match=r'get_config\(None\) of config file .* raised ZeroDivisionError'):
    config_lib.load(str(tmp_path / 'c.py'))


@pytest.mark.parametrize('override, message', [
    ('--config.train.num_epoch=3', r'--config.train.num_epoch=3: the config has no field train.num_epoch; '
                                   r'did you mean train.num_epochs\?'),
    ('--config.modle.latent_dim=3', r'the config has no field modle; did you mean model\?'),
    ('--config.model.latent_dim.x=3', r'model.latent_dim is a value, not a section'),
])
def test_an_unknown_config_field_is_one_line_with_the_closest_names(override, message):
  argv = ['aelab.main', '--config=configs/ae.py', override, '--workdir=/tmp/w']
  line = cli.flag_error(AttributeError('long ml_collections message\nDid you mean ...'), argv)
  assert '\n' not in line and re.search(message, line), line


@pytest.mark.parametrize('field, value, message', [
    ('model.latent_dim', None, r'model.latent_dim=None must be an integer \(like its default, 32\)'),
    ('corruption.std', float('nan'), 'corruption.std=nan must be a finite number'),
    ('penalty.weight', float('inf'), 'penalty.weight=inf must be a finite number'),
    ('data.path', None, None),  # a placeholder may stay None
])
def test_validate_checks_types_and_finiteness(field, value, message):
  config = load_config('ae')
  section, name = field.split('.')
  config[section][name] = value
  if message is None:
    config_lib.validate(config)
  else:
    with pytest.raises(config_lib.ConfigError, match=message):
      config_lib.validate(config)


def test_from_dict_turns_wrong_types_into_config_errors():
  with pytest.raises(config_lib.ConfigError, match=r"model.latent_dim='sixteen' must be an integer \(like its default"):
    config_lib.from_dict({'model': {'latent_dim': 'sixteen'}})
  with pytest.raises(config_lib.ConfigError, match=r"data=3 must be a section of fields like \[.*'binarize'"):
    config_lib.from_dict({'data': 3})
  with pytest.raises(config_lib.ConfigError, match='JSON object'):
    config_lib.from_dict([1, 2])
  assert config_lib.from_dict({'model': {'latent_dim': 4}}).model.latent_dim == 4


# ---- a full disk, told once ----

def _enospc(path: str) -> OSError:
  return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def test_reporting_tells_a_full_disk_once(tmp_path, caplog, capsys, monkeypatch):
  unraisable = []
  monkeypatch.setattr(sys, 'unraisablehook', unraisable.append)
  with pytest.raises(SystemExit) as info:
    with cli.reporting(debug=False, workdir=str(tmp_path)):
      absl_logging.error('Failed to run commit', exc_info=_enospc(str(tmp_path / 'checkpoints')))
      logging.getLogger('absl').error('[Errno 28] No space left on device')
      sys.unraisablehook(types.SimpleNamespace(exc_value=RuntimeError('Event loop is closed')))
      raise ValueError('TensorStore write failed') from _enospc(str(tmp_path / 'd'))
  assert info.value.code == (f'error: the disk is full in {tmp_path} (writing {tmp_path}/d): free space or use a '
                             '--workdir on another disk, then rerun the same command; training resumes from the '
                             'last checkpoint.')
  assert not [r for r in caplog.records if r.name == 'absl'] and capsys.readouterr().err == ''
  assert unraisable == [] and sys.unraisablehook == unraisable.append  # dropped, and the hook restored


def test_unraisable_exceptions_are_shown_after_a_clean_run(monkeypatch):
  unraisable = []
  monkeypatch.setattr(sys, 'unraisablehook', unraisable.append)
  with cli.reporting(debug=False):
    sys.unraisablehook('late')
    assert unraisable == []
  assert unraisable == ['late']


def test_reporting_passes_other_errors_and_debug_keeps_the_traceback():
  with pytest.raises(KeyError):  # a bug, not a user's mistake: the traceback stays
    with cli.reporting(debug=False):
      raise KeyError('x')
  with pytest.raises(data.DataError):
    with cli.reporting(debug=True):
      raise data.DataError('bad data')
  with pytest.raises(SystemExit, match='^error: bad data$'):
    with cli.reporting(debug=False):
      raise data.DataError('bad data')


def test_a_full_disk_during_training_is_one_line_naming_the_workdir(tmp_path, monkeypatch):
  def full(run_dir):
    raise _enospc(os.path.join(run_dir, 'metrics.jsonl'))
  monkeypatch.setattr(writers.JsonlWriter, 'write_scalars', lambda self, *args: full(self.run_dir))
  with pytest.raises(SystemExit) as info:
    with cli.reporting(debug=False, workdir=str(tmp_path)):
      engine.train_and_evaluate(small(load_config('ae'), epochs=1), str(tmp_path))
  assert str(info.value.code) == (
      f'error: the disk is full in {tmp_path} (writing {tmp_path}/metrics.jsonl): free space or use a '
      '--workdir on another disk, then rerun the same command; training resumes from the last checkpoint.')


def test_remove_if_empty_keeps_anything_with_a_file(tmp_path):
  (tmp_path / 'empty' / 'a' / 'b').mkdir(parents=True)
  cli.remove_if_empty(str(tmp_path / 'empty'))
  assert not (tmp_path / 'empty').exists()
  (tmp_path / 'kept' / 'a').mkdir(parents=True)
  (tmp_path / 'kept' / 'b').mkdir()
  (tmp_path / 'kept' / 'a' / 'f').write_text('x')
  cli.remove_if_empty(str(tmp_path / 'kept'))
  assert sorted(os.listdir(tmp_path / 'kept')) == ['a'] and (tmp_path / 'kept' / 'a' / 'f').exists()


# ---- the command line (subprocesses: each imports JAX, so few) ----

def _main(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  command = [sys.executable, '-m', 'aelab.main', *args, '--config.train.num_epochs=1',
             '--config.train.figures_every=0', f'--config.train.compilation_cache_dir={CACHE_DIR}']
  return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_main_unknown_field_is_one_line_with_exit_status_1(tmp_path):
  done = _main('--config=configs/ae.py', '--config.train.num_epoch=3', f'--workdir={tmp_path / "w"}')
  assert done.returncode == 1 and done.stderr == ('error: --config.train.num_epoch=3: the config has no field '
                                                  'train.num_epoch; did you mean train.num_epochs?\n'), done.stderr
  assert not (tmp_path / 'w').exists()


def test_main_label_only_csv_is_one_line_and_leaves_no_workdir_and_debug_shows_the_traceback(tmp_path):
  (tmp_path / 'd.csv').write_text('label\n' + ''.join(f'{i % 3}\n' for i in range(50)))
  args = (f'--config=configs/ae.py:csv={tmp_path / "d.csv"}', f'--workdir={tmp_path / "w"}')
  done = _main(*args)
  assert done.returncode == 1 and done.stderr.count('\n') == 1, done.stderr
  assert done.stderr.startswith(f'error: csv train file {tmp_path / "d.csv"}: examples of shape (0,) hold no')
  assert not (tmp_path / 'w').exists()
  debug = _main(*args, '--debug')
  assert debug.returncode == 1 and 'Traceback (most recent call last)' in debug.stderr
  assert 'aelab.errors.DataError: csv train file' in debug.stderr and not (tmp_path / 'w').exists()


def test_main_with_an_empty_workdir_is_one_line_and_writes_nothing(tmp_path):
  done = _main(f'--config={ROOT / "configs" / "ae.py"}', '--workdir=', cwd=tmp_path)  # issue 20, finding 5
  assert done.returncode == 1 and done.stderr == ('error: --workdir is empty: name a directory for the run\'s '
                                                  'outputs, e.g. --workdir=runs/ae.\n'), done.stderr
  assert os.listdir(tmp_path) == []  # before: .lock, checkpoints/, config.json, summary.json, ... here
