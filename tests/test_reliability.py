"""Issue 20, finding 1: a run knows its data. A rerun in a workdir on other data (a file overwritten, more
rows, an image folder that gained a class, a relative path from another directory) is refused in one line
naming what changed, before any "continues training" line; the same file named by its absolute path is the
same data. Each test trains tiny runs (1 epoch on a 160-row npz)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from aelab import config as config_lib, data
from aelab.data import fingerprints as fingerprint
from aelab.train import engine
from conftest import CACHE_DIR


def _npz(path, rows: int = 160, seed: int = 0) -> str:
  np.savez(path, x=np.random.default_rng(seed).integers(0, 256, (rows, 8, 8), dtype=np.uint8))
  return str(path)


def _config(arg: str, epochs: int = 1):
  config = config_lib.load(os.path.join(os.path.dirname(__file__), '..', 'configs', f'ae.py:{arg}'))
  config.train.update(num_epochs=epochs, figures_every=0, compilation_cache_dir=CACHE_DIR, batch_size=32)
  config.eval.final_metrics = False
  return config


def _rerun(workdir, arg: str, epochs: int = 2) -> list[str]:
  """Reruns with more epochs; returns the lines it logged."""
  lines = []
  engine.train_and_evaluate(_config(arg, epochs), str(workdir), log=lines.append)
  return lines


def test_config_json_holds_the_resolved_path_and_the_fingerprint(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _npz(tmp_path / 'd.npz')
  engine.train_and_evaluate(_config('npz=d.npz'), str(tmp_path / 'w'), log=lambda line: None)
  stored = json.load(open(tmp_path / 'w' / 'config.json'))
  assert stored['data']['path'] == str(tmp_path / 'd.npz')  # before: 'd.npz', resolved from any directory
  found = stored['data_fingerprint']['path']
  assert found['kind'] == 'file' and found['size'] == os.path.getsize(tmp_path / 'd.npz')
  assert found['sha256'] == fingerprint.content_hash(str(tmp_path / 'd.npz'), found['size'])


@pytest.mark.parametrize('change', ['same shape, other values', '160 -> 360 rows', 'streamed, 360 -> 160 rows'])
def test_a_data_file_overwritten_under_a_workdir_is_refused_before_continuing(tmp_path, change):
  streamed = change.startswith('streamed')
  path = _npz(tmp_path / 'd.npz', 360 if streamed else 160)
  arg = f'npz={path}'
  config = _config(arg)
  config.data.stream = streamed
  engine.train_and_evaluate(config, str(tmp_path / 'w'), log=lambda line: None)
  _npz(path, *{'same shape, other values': (160, 1), '160 -> 360 rows': (360, 0)}.get(change, (160, 0)))
  lines, config = [], _config(arg, epochs=2)
  config.data.stream = streamed
  with pytest.raises(config_lib.ConfigError) as info:  # before: "continues training", one run on two datasets
    engine.train_and_evaluate(config, str(tmp_path / 'w'), log=lines.append)
  message = str(info.value)
  assert message.startswith(f'{tmp_path / "w"} holds a run trained on other data') and '\n' not in message
  what = 'has other content of the same size' if change.startswith('same') else 'changed from'
  assert f'data.path {path} {what}' in message and 'Use a new --workdir for this data' in message
  assert not [line for line in lines if 'continues training' in line]
  assert [json.loads(line)['epoch'] for line in open(tmp_path / 'w' / 'metrics.jsonl')] == [1]


def test_a_relative_path_from_another_directory_is_other_data_and_the_absolute_path_the_same(tmp_path, monkeypatch):
  for where, seed in (('a', 0), ('b', 1)):
    (tmp_path / where).mkdir()
    _npz(tmp_path / where / 'd.npz', seed=seed)
  monkeypatch.chdir(tmp_path / 'a')
  engine.train_and_evaluate(_config('npz=d.npz'), str(tmp_path / 'w'), log=lambda line: None)
  monkeypatch.chdir(tmp_path / 'b')  # a different file of the same name
  with pytest.raises(config_lib.ConfigError,
                     match=rf'Changed since: data.path {tmp_path}/a/d.npz -> {tmp_path}/b/d.npz \(other content\)'):
    _rerun(tmp_path / 'w', 'npz=d.npz')
  lines = _rerun(tmp_path / 'w', f'npz={tmp_path / "a" / "d.npz"}')  # before: refused as a changed data.path
  assert any('continues training' in line for line in lines), lines
  assert [json.loads(line)['epoch'] for line in open(tmp_path / 'w' / 'metrics.jsonl')] == [1, 2]


def test_an_image_folder_that_gained_a_class_is_refused(tmp_path):
  rng = np.random.default_rng(0)
  for label in ('a', 'b'):
    for i in range(40):
      (tmp_path / 'img' / label).mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / 'img' / label / f'{i}.png')
  engine.train_and_evaluate(_config(f'images={tmp_path / "img"}'), str(tmp_path / 'w'), log=lambda line: None)
  (tmp_path / 'img' / 'c').mkdir()
  for i in range(5):
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / 'img' / 'c' / f'{i}.png')
  with pytest.raises(config_lib.ConfigError, match=r"data.path .*/img: files 80 -> 85, bytes \d+ -> \d+, "
                     r"subfolders \['a', 'b'\] -> \['a', 'b', 'c'\]"):
    _rerun(tmp_path / 'w', f'images={tmp_path / "img"}')


def test_fingerprint_changes_and_sampled_hashes(tmp_path, monkeypatch):
  monkeypatch.setattr(fingerprint, 'WHOLE_FILE_BYTES', 1000)
  monkeypatch.setattr(fingerprint, 'SAMPLE_BYTES', 100)
  big = tmp_path / 'big.bin'
  big.write_bytes(bytes(range(256)) * 40)  # 10240 bytes: 64 blocks of 100 sampled
  before = fingerprint.of_path(str(big))
  raw = bytearray(big.read_bytes())
  raw[0] ^= 1  # the first block is always sampled
  big.write_bytes(bytes(raw))
  after = fingerprint.of_path(str(big))
  assert fingerprint.changes({'path': before}, {'path': after}) == [
      f'data.path {big} has other content of the same size (modified '
      f'{fingerprint._when(after["mtime"])})']  # noqa: SLF001
  os.utime(big, (1, 1))  # a copy of the same bytes: only the time differs
  assert fingerprint.changes({'path': after}, {'path': fingerprint.of_path(str(big))}) == []
  assert fingerprint.changes({'tfds': 'mnist', 'version': '3.0.1'}, {'tfds': 'mnist', 'version': '3.0.2'}) == [
      'version: 3.0.1 -> 3.0.2']
  assert data.fingerprint(config_lib.base('ae').data) == {}  # digits: bundled, the config says it all
