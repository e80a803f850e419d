"""Streaming input (aelab/stream.py): sources read in place, grain epochs, and streamed training that
resumes to the numbers of an uninterrupted run."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aelab.train import checkpoints, engine, sweep

from aelab import data

from aelab.data import stream
from conftest import ROOT, load_config, small


def _images(n=300, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 8, 8), np.uint8)


def _data_config(path, **fields):
  config = load_config('vae', f'npz={path}').data
  config.update(fields)
  return config


@pytest.fixture(scope='module')
def npz(tmp_path_factory):
  path = tmp_path_factory.mktemp('npz') / 'images.npz'
  np.savez(path, x=_images(), y=np.arange(300) % 10)
  return path


def test_npy_file_reads_rows_in_place(tmp_path, npz):
  x = _images()
  rows = np.array([5, 0, 299, 5, 17])
  np.testing.assert_array_equal(stream.NpyFile(npz)[rows], x[rows])
  np.save(tmp_path / 'x.npy', x.astype(np.float32) / 255)
  np.testing.assert_array_equal(stream.NpyFile(tmp_path / 'x.npy')[rows], x[rows].astype(np.float32) / 255)
  assert stream.NpyFile(npz).shape == (300, 8, 8)


def test_compressed_or_missing_member_is_a_clear_error(tmp_path):
  np.savez_compressed(tmp_path / 'c.npz', x=_images())
  with pytest.raises(data.DataError, match=r'compressed.*np\.savez\(path'):
    stream.NpyFile(tmp_path / 'c.npz')
  np.savez(tmp_path / 'z.npz', images=_images())
  with pytest.raises(data.DataError, match=r"no array 'x'.*images\.npy"):
    stream.NpyFile(tmp_path / 'z.npz')


def test_streamed_npz_is_data_load_split_and_order(npz):
  config = _data_config(npz, stream=True, binarize='static', max_test_examples=40)
  streamed, loaded = stream.load(config), data.load(config)
  assert isinstance(streamed.train, stream.Stream) and streamed.train.shape == loaded.x_train.shape
  idx = np.arange(len(loaded.x_train))
  np.testing.assert_array_equal(data.to_float32(streamed.train.read(idx), 255), data.load(
      _data_config(npz, max_test_examples=40)).x_train)  # the same examples in the same order, as uint8
  np.testing.assert_array_equal(streamed.x_test, loaded.x_test)  # binarized like data.load's
  np.testing.assert_array_equal(streamed.y_test, loaded.y_test)
  assert streamed.shape == loaded.shape == (8, 8, 1)
  np.save(npz.with_name('x.npy'), _images())  # a .npy (no labels) streams the same images
  from_npy = stream.load(_data_config(npz.with_name('x.npy'), stream=True, max_test_examples=40))
  np.testing.assert_array_equal(from_npy.train.read(idx), streamed.train.read(idx))
  assert from_npy.y_test is None


def test_streaming_is_automatic_above_the_size_field(npz):
  assert not stream.should_stream(_data_config(npz))  # 0.07 MB as float32, under 4096
  assert stream.should_stream(_data_config(npz, stream_above_mb=0.05))
  assert not stream.should_stream(_data_config(npz, stream_above_mb=0))


def test_epoch_batches_are_seeded_permutations_of_disjoint_shards(npz):
  train = stream.load(_data_config(npz, stream=True)).train  # 240 training examples
  values = {tuple(train.read(np.array([i]))[0]): i for i in range(len(train))}

  def order(seed, epoch, shard_index=0, shard_count=1):
    it = stream.epoch_batches(train, 16, seed, epoch, shard_index=shard_index, shard_count=shard_count)
    return [values[tuple(row)] for batch in it for row in batch]

  first = order(0, 1)
  assert len(first) == 240 and sorted(first) == list(range(240))
  assert order(0, 1) == first and order(0, 2) != first and order(1, 1) != first
  shards = [order(0, 1, i, 3) for i in range(3)]
  assert [len(s) for s in shards] == [80, 80, 80]
  assert sorted(sum(shards, [])) == list(range(240))
  assert all(i % 3 == k for k, s in enumerate(shards) for i in s)  # process k reads rows k, k + 3, ...
  chunked = list(stream.epoch_batches(train, 16, 0, 1, chunk=4))
  assert [c.shape for c in chunked] == [(4, 16, 64)] * 3 + [(3, 16, 64)]  # 15 batches: chunks of 4, 4, 4, 3
  assert [values[tuple(row)] for c in chunked for row in c.reshape(-1, 64)] == first
  with pytest.raises(data.DataError, match='shard 0 of 20 holds 12 examples, fewer than one batch of 16'):
    stream.epoch_batches(train, 16, 0, 1, shard_count=20)


def test_iterator_state_continues_where_it_stopped(npz):
  train = stream.load(_data_config(npz, stream=True)).train
  it = stream.epoch_batches(train, 16, 3, 1)
  [next(it) for _ in range(5)]
  state = json.loads(json.dumps(it.get_state()))  # as the checkpoint's JSON item stores it
  rest = list(it)
  resumed = list(stream.epoch_batches(train, 16, 3, 1, state=state))
  assert len(rest) == 10 and all(np.array_equal(a, b) for a, b in zip(rest, resumed, strict=True))


def _streamed_config(npz, epochs=3):
  config = small(load_config('vae', f'npz={npz}'), epochs=epochs)
  config.model.update(hidden=(32,), latent_dim=4)
  config.data.update(stream=True, stream_chunk=4)  # 240 / 16 = 15 batches: chunks of 4, 4, 4, 3
  config.train.update(batch_size=16, checkpoint_every=1)
  config.eval.final_metrics = False
  return config


@pytest.fixture(scope='module')
def uninterrupted(npz, tmp_path_factory):
  return engine.train_and_evaluate(_streamed_config(npz), str(tmp_path_factory.mktemp('full')), log=lambda line: None)


def test_streamed_run_killed_after_epoch_2_resumes_to_the_same_numbers(npz, tmp_path, monkeypatch, uninterrupted):
  config, workdir = _streamed_config(npz), str(tmp_path / 'killed')
  save = checkpoints.GroupCheckpoints.save

  def killed_after_epoch_2(self, epoch, state, pinned=frozenset(), **items):
    if epoch == 3:
      raise KeyboardInterrupt  # the process dies after epoch 2's checkpoint
    save(self, epoch, state, pinned, **items)

  monkeypatch.setattr(checkpoints.GroupCheckpoints, 'save', killed_after_epoch_2)
  with pytest.raises(KeyboardInterrupt):
    engine.train_and_evaluate(config, workdir, log=lambda line: None)
  monkeypatch.undo()
  state = checkpoints.data_iterator(workdir, 2)  # an item of epoch 2's orbax checkpoint
  assert state['seed'] == 0 and state['epoch'] == 2 and state['iterator'] == {'next_index': 15}  # batches
  assert not os.path.exists(os.path.join(workdir, 'stream.json'))
  lines = []
  resumed = engine.train_and_evaluate(config, workdir, log=lines.append)
  assert lines[0].startswith('Resuming from the checkpoint of epoch 2'), lines
  keys = [k for k in uninterrupted if k.startswith(('train/', 'test/'))]
  assert keys and all(resumed[k] == uninterrupted[k] for k in keys)
  assert checkpoints.data_iterator(workdir, 3)['epoch'] == 3


def test_streamed_training_learns_like_in_memory(npz, tmp_path, uninterrupted):
  config = _streamed_config(npz)
  config.data.stream = False
  in_memory = engine.train_and_evaluate(config, str(tmp_path / 'memory'), log=lambda line: None)
  # Same data, step keys and initialization; only the batch order differs.
  assert uninterrupted['test/neg_elbo'] == pytest.approx(in_memory['test/neg_elbo'], rel=0.02)
  assert uninterrupted['train/loss'] != in_memory['train/loss']


def test_any_random_access_source_streams(tmp_path):
  """A source with __len__ / __getitem__ returning dicts (as an image-folder source does)."""
  images = _images(200, seed=1)

  class Records:
    def __len__(self):
      return len(images)

    def __getitem__(self, i):
      return {'image': images[i][..., None], 'label': i % 10}

  config = _streamed_config('unused', epochs=2)
  dataset = stream.dataset(Records(), images[:50].reshape(50, -1) / np.float32(255), None, (8, 8, 1),
                           config.data)
  _, _, history = engine.fit(config, dataset)
  assert len(history) == 2 and history[1]['test/neg_elbo'] < history[0]['test/neg_elbo']


def test_tfds_data_source_streams_under_mock_data(tmp_path):
  config = small(load_config('vae', 'mnist'), epochs=1)
  config.model.update(hidden=(16,), latent_dim=2)
  config.data.update(stream=True, stream_chunk=2)
  config.train.batch_size = 16
  config.eval.final_metrics = False
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    dataset, loaded = stream.load(config.data), data.load(config.data)
    summary = engine.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
  assert isinstance(dataset.train, stream.Stream) and dataset.train.shape == loaded.x_train.shape
  np.testing.assert_array_equal(data.to_float32(dataset.train.read(np.arange(len(loaded.x_train))), 255),
                                loaded.x_train)  # data.load's split (mock mnist has no test split here)
  np.testing.assert_array_equal(dataset.x_test, loaded.x_test)
  assert np.isfinite(summary['test/neg_elbo']) and summary['test/neg_elbo'] > 0
  stored = json.load(open(tmp_path / 'config.json'))['data_fingerprint']  # issue 20: a run knows its data
  assert stored['tfds'] == 'mnist' and stored['version'].count('.') == 2, stored


def test_a_sweep_shares_one_stream_and_equals_single_runs(npz, tmp_path, uninterrupted):
  """Both models see the batch order of the group's first run's seed (0); each equals its single run."""
  config = _streamed_config(npz)
  overrides = sweep.axis('vae.kl_weight', [1.0, 2.0])
  summaries = sweep.run_sweep(config, overrides, str(tmp_path / 'sweep'), log=lambda line: None)
  first = summaries[sweep.run_name(overrides[0])]
  keys = [k for k in uninterrupted if k.startswith(('train/', 'test/'))]
  np.testing.assert_allclose([first[k] for k in keys], [uninterrupted[k] for k in keys], rtol=2e-5, atol=1e-6)
  second = summaries[sweep.run_name(overrides[1])]
  assert second['test/kl'] < first['test/kl']  # a larger KL weight, the same stream
  for name in summaries:
    assert checkpoints.data_iterator(os.path.join(tmp_path, 'sweep', name), 3)['seed'] == 0


def test_stream_fields_are_validated():
  from aelab import config as config_lib  # noqa: PLC0415
  config = load_config('vae')
  config.data.stream_chunk = 0
  with pytest.raises(config_lib.ConfigError, match='data.stream_chunk=0'):
    config_lib.validate(config)
  assert isinstance(config.data, ml_collections.ConfigDict)


def test_image_folder_streams_data_load_split_and_order(tmp_path):
  """A streamed image folder reads, at its training indices, data.load's training images (same seeded
  split and order), and holds data.load's test images and labels in memory."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for i in range(30):
    folder = tmp_path / 'imgs' / ('a' if i % 3 else 'b')
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(folder / f'{i:02d}.png')
  config = load_config('vae', f'images={tmp_path / "imgs"}').data
  loaded = data.load(config)
  config.stream = True
  streamed = stream.load(config)
  assert isinstance(streamed.train, stream.Stream) and streamed.train.shape == loaded.x_train.shape
  np.testing.assert_array_equal(data.to_float32(streamed.train.read(np.arange(len(loaded.x_train))), 255),
                                loaded.x_train)
  np.testing.assert_array_equal(streamed.x_test, loaded.x_test)
  np.testing.assert_array_equal(streamed.y_test, loaded.y_test)


def test_big_data_streams_by_default_and_keeps_its_test_split_stored(tmp_path):
  """The default decision counts the stored bytes times the copies an in-memory load makes; the held-out
  split of a streamed run stays uint8 and equals data.load's, binarized block by block."""
  path = tmp_path / 'images.npz'
  np.savez(path, x=np.random.default_rng(1).integers(0, 256, (24_000, 4, 4), np.uint8))
  config = _data_config(path, test_fraction=0.5)  # 12,000 test rows: two binarization blocks
  assert stream.in_memory_megabytes(config) == pytest.approx(24_000 * 16 * 3 / 2**20)
  assert not stream.should_stream(config)  # 1.1 MB, under the default 1024
  config.stream_above_mb = 1.0
  streamed, loaded = stream.load(config), data.load(config)
  assert isinstance(streamed.train, stream.Stream)
  assert streamed.test.dtype == loaded.test.dtype == np.uint8 and streamed.x_max == loaded.x_max == 255
  np.testing.assert_array_equal(streamed.test, loaded.test)
  assert set(np.unique(streamed.test)) == {0, 255} and 0.3 < streamed.test.mean() / 255 < 0.7
  # A split of at most one block is binarized exactly as one call of dynamic_binarize on the whole split.
  small_config = _data_config(path, test_fraction=0.25, max_test_examples=5_000)
  x_test = data.load(_data_config(path, test_fraction=0.25, binarize='none', max_test_examples=5_000)).x_test
  expected = np.asarray(data.dynamic_binarize(jax.random.key(0), x_test)).astype(np.uint8) * 255
  np.testing.assert_array_equal(data.load(small_config).test, expected)


MEMORY_CHILD = """
import resource, sys
from aelab import config as config_lib
from aelab.data import stream
config = config_lib.load(f'configs/vae.py:npz={sys.argv[1]}').data
config.update(test_fraction=0.5, stream_above_mb=1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dataset = stream.load(config)
print(dataset.test.nbytes, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_a_streamed_load_holds_no_float32_copy_of_the_test_split(tmp_path):
  """A memory ceiling: loading 40,000 held-out 28x28 images (31 MB as uint8, 125 MB as float32; the dynamic
  binarization of the whole split at once took 4 float32 copies) grows the peak resident memory by less
  than three times their stored size."""
  path = tmp_path / 'images.npz'
  np.savez(path, x=np.random.default_rng(2).integers(0, 256, (80_000, 28, 28), np.uint8))
  child = subprocess.run([sys.executable, '-c', MEMORY_CHILD, str(path)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
  test_bytes, grown = map(int, child.stdout.split())
  assert test_bytes == 40_000 * 784 and grown < 3 * test_bytes, (test_bytes, grown)


def test_models_at_once_bounds_the_working_memory_to_that_many_models():
  """over_models(..., at_once): a function whose B x M intermediates dominate needs about the memory of
  ``at_once`` models' intermediates, not of all ``K``; the values are vmap's."""
  from aelab.train import program  # noqa: PLC0415
  w_KxDxM = jax.random.normal(jax.random.key(0), (8, 16, 512))
  x_BxD = jax.random.normal(jax.random.key(1), (256, 16))
  loss = lambda w, x: jnp.sum(jax.nn.relu(x @ w) ** 2) + jnp.sum(jnp.tanh(x @ w))  # noqa: E731
  step = lambda w, x: (w - 1e-3 * jax.grad(loss)(w, x), loss(w, x))  # noqa: E731
  temp, out = {}, {}
  for at_once in (0, 1, 3):  # 3: two lax.map steps of 3 models and a remainder of 2
    fn = jax.jit(program.over_models(step, 8, [0, None], at_once))
    temp[at_once] = fn.lower(w_KxDxM, x_BxD).compile().memory_analysis().temp_size_in_bytes
    out[at_once] = fn(w_KxDxM, x_BxD)
  one_model_BxM = 256 * 512 * 4
  assert temp[0] >= 8 * one_model_BxM and temp[1] < temp[3] < temp[0] and 4 * temp[1] < temp[0], temp
  for at_once in (1, 3):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), out[at_once], out[0])
  mapped = program.over_models(loss, 8, [0, None], 3)(w_KxDxM, x_BxD)  # no state to update: jax.lax.map
  np.testing.assert_allclose(mapped, out[0][1], rtol=1e-5)


def test_a_group_trained_some_models_at_a_time_equals_all_at_once(npz):
  config = _streamed_config(npz)
  dataset = stream.load(config.data)
  x_CxBxD = jnp.asarray(dataset.train.read(np.arange(32))).reshape(2, 16, -1)
  engine.enable_compilation_cache(config)  # as train_runs does: the suite's cache
  chunks = {}
  for at_once in (0, 1):
    config.train.models_at_once = at_once
    runs = [engine.make_run(sweep.apply(config, {'vae.kl_weight': w}), dataset.shape) for w in (1.0, 2.0)]
    p = engine.Program(runs, dataset)
    state = p.init(jnp.stack([r.init_key for r in runs]), jnp.full(2, 1e-3))
    hp, keys = p.shard(engine.stack([r.hp for r in runs])), jnp.stack([r.train_key for r in runs])
    chunks[at_once] = jax.device_get(p.chunk(state, x_CxBxD, 1, keys, hp))
    with pytest.raises(RuntimeError, match='deleted'):  # the chunk trains the state in place (donated)
      np.asarray(jax.tree.leaves(state)[0])
  assert chunks[0][1]['loss'].shape == (2, 2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), chunks[1], chunks[0])
