"""Group checkpoints: one stacked save per epoch (with the data iterator's state as a second item), orbax's
preservation policies keeping the latest and the pinned epochs, and run pointers."""
import hashlib
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import orbax.checkpoint as ocp

from aelab.train import checkpoints


def _state(value: float, models: int = 3):
  return {'params': {'w': jnp.full((models, 4, 2), value)}, 'step': jnp.full((models,), int(value), jnp.int32)}


def test_saves_restore_the_stacked_state_and_keep_the_latest_and_pinned(tmp_path):
  ckpt = checkpoints.GroupCheckpoints(str(tmp_path / 'checkpoints'), keep=2)
  for epoch in range(1, 6):
    ckpt.save(epoch, _state(epoch), pinned={2})
    ckpt.wait()
  assert ckpt.steps() == [2, 4, 5]  # the two latest, and epoch 2 (a diverged run's last good one)
  assert ckpt.shapes(4) == [(3, 4, 2), (3,)]
  restored = ckpt.restore(4, _state(0.0))
  np.testing.assert_array_equal(restored['params']['w'], np.full((3, 4, 2), 4.0))
  assert restored['step'].tolist() == [4, 4, 4]
  ckpt.close()


def test_pinned_epochs_are_kept_once_pinned_and_a_diverged_models_epoch_stays(tmp_path):
  ckpt = checkpoints.GroupCheckpoints(str(tmp_path / 'checkpoints'), keep=3)
  for epoch in range(1, 5):
    ckpt.save(epoch, _state(epoch), pinned={1} if epoch >= 3 else set())
    ckpt.wait()
  assert ckpt.steps() == [1, 2, 3, 4]  # epoch 1 pinned at epoch 3's save, before orbax let it go
  for epoch in (5, 6):
    ckpt.save(epoch, _state(epoch))  # the pin holds for the manager's life
    ckpt.wait()
  assert ckpt.steps() == [1, 4, 5, 6]
  ckpt.close()


def test_the_data_iterator_is_an_item_of_the_same_step(tmp_path):
  directory, run_dir = tmp_path / 'checkpoints', tmp_path / 'run'
  os.makedirs(run_dir)
  ckpt = checkpoints.GroupCheckpoints(str(directory))
  iterator = {'seed': 7, 'epoch': 1, 'iterator': {'next_index': 15}}
  ckpt.save(1, _state(1.0), data_iterator=iterator)
  ckpt.save(2, _state(2.0))  # in-memory data: no iterator
  ckpt.close()
  assert {'data_iterator', 'state'} <= set(os.listdir(directory / '1'))
  assert 'data_iterator' not in os.listdir(directory / '2') and 'state' in os.listdir(directory / '2')
  checkpoints.write_pointer(str(run_dir), str(directory), 0, 2)
  assert checkpoints.data_iterator(str(run_dir), 1) == iterator
  assert checkpoints.data_iterator(str(run_dir), 2) is None
  assert checkpoints.data_iterator(str(run_dir), 3) is None  # no such step
  assert checkpoints.data_iterator(str(tmp_path), 1) is None  # no pointer
  reopened = checkpoints.GroupCheckpoints(str(directory))
  assert reopened.restore(1, _state(0.0))['step'].tolist() == [1, 1, 1]
  reopened.close()
  checkpoints.discard(str(directory), 2)
  assert sorted(os.listdir(directory)) == ['1']


def test_a_pointer_finds_the_newest_checkpoint_at_or_before_its_epoch(tmp_path):
  run_dir, directory = tmp_path / 'run', tmp_path / 'groups' / 'g' / 'checkpoints'
  os.makedirs(run_dir)
  assert checkpoints.latest(str(run_dir)) is None
  ckpt = checkpoints.GroupCheckpoints(str(directory), keep=3)
  for epoch in (1, 2):
    ckpt.save(epoch, _state(epoch))
  ckpt.close()
  checkpoints.write_pointer(str(run_dir), str(directory), 2, 2)
  assert checkpoints.read_pointer(str(run_dir))['directory'] == str(directory)
  assert checkpoints.latest(str(run_dir)) == (str(directory), 2, 2)
  checkpoints.write_pointer(str(run_dir), str(directory), 2, 3)  # epoch 3's save never finished
  assert checkpoints.latest(str(run_dir)) == (str(directory), 2, 2)
  checkpoints.write_pointer(str(run_dir), str(directory), 2, 1)  # a run that diverged after epoch 1
  assert checkpoints.latest(str(run_dir)) == (str(directory), 2, 1)


def test_a_checkpoint_of_an_older_aelab_restores(tmp_path):
  """Before the steps had named items, a step held the state alone, as orbax's unnamed item ``default``."""
  old = ocp.CheckpointManager(str(tmp_path), item_handlers=ocp.StandardCheckpointHandler())
  old.save(3, args=ocp.args.StandardSave(_state(3.0)))
  old.close()
  ckpt = checkpoints.GroupCheckpoints(str(tmp_path))
  assert ckpt.shapes(3) == [(3, 4, 2), (3,)] and ckpt.data_iterator(3) is None
  assert ckpt.restore(3, _state(0.0))['step'].tolist() == [3, 3, 3]
  ckpt.close()


def _flip_bytes(step_dir: str, count: int = 4) -> None:
  """XORs ``count`` bytes in the middle of the biggest data file of a step: same size, other content."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, 'state')) for f in fs]
  biggest = max(files, key=os.path.getsize)
  raw = bytearray(open(biggest, 'rb').read())
  for i in range(count):
    raw[len(raw) // 2 + i] ^= 0xFF
  with open(biggest, 'wb') as f:
    f.write(raw)


def test_a_checkpoint_with_flipped_bytes_is_found_damaged(tmp_path):  # issue 20, finding 4
  ckpt = checkpoints.GroupCheckpoints(str(tmp_path / 'checkpoints'))
  state = {'params': {'w': jnp.asarray(np.random.default_rng(0).normal(size=(3, 64, 32)), jnp.float32)},
           'step': jnp.zeros((3,), jnp.int32)}
  ckpt.save(1, state)
  ckpt.wait()
  stored = json.load(open(tmp_path / 'checkpoints' / '1' / 'checksums' / 'metadata'))
  assert stored['arrays']["['params']['w']"] == hashlib.sha256(np.asarray(state['params']['w']).tobytes()).hexdigest()
  _flip_bytes(str(tmp_path / 'checkpoints' / '1'))
  with pytest.raises(checkpoints.DamagedCheckpoint, match=r"^1 of 2 arrays of the checkpoint of epoch 1 in .* read "
                     r"back with other bytes than were saved: checksums differ for \['params'\]\['w'\]$"):
    ckpt.restore(1, state)  # before: restored, values off by up to 1e34
  ckpt.close()
