"""Group checkpoints: one stacked save per epoch, pruning that keeps pinned epochs, and run pointers."""
import os

import jax.numpy as jnp
import numpy as np

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
