"""Numbers of compact data and of bfloat16 matmuls: uint8 images on the device give the float32 path's
metrics, and a bfloat16 run trains to within a stated tolerance of the float32 one."""
import dataclasses

import jax
import numpy as np
import pytest
from sklearn import datasets as sk_datasets

from aelab import data

from aelab.train import engine, program
from aelab.train.workdir import Workdir
from conftest import load_config, small

BF16_TOLERANCE = 0.01  # relative gap of test/neg_elbo after 3 epochs on digits (seen: 4e-5)


@pytest.fixture(scope='module')
def uint8_npz(tmp_path_factory):
  """The digits as 0..255 uint8 images (an npz), so the stored value 255 means 1.0."""
  path = tmp_path_factory.mktemp('npz') / 'digits255.npz'
  digits = sk_datasets.load_digits()
  np.savez(path, x=np.round(digits.images * 255 / 16).astype(np.uint8), y=digits.target)
  return str(path)


def test_dataset_stores_uint8_and_views_float32(uint8_npz, tmp_path):
  config = load_config('vae', f'npz={uint8_npz}')
  ds = data.load(config.data)
  assert ds.train.dtype == np.uint8 and ds.x_max == 255 and ds.train.nbytes * 4 == ds.x_train.nbytes
  assert ds.x_train.dtype == np.float32
  np.testing.assert_allclose(ds.x_train, ds.train / 255, rtol=1e-7)  # within 1 ulp of x / 255
  assert set(np.unique(ds.test)) == {0, 255} and set(np.unique(ds.x_test)) == {0.0, 1.0}  # binarized once
  static_config = config.data.copy_and_resolve_references()
  static_config.binarize = 'static'
  static = data.load(static_config)
  assert static.train.dtype == np.uint8
  np.testing.assert_array_equal(static.x_train, (ds.x_train > 0.5).astype(np.float32))
  digits = data.load(load_config('ae').data)
  assert digits.train.dtype == np.uint8 and digits.x_max == 16 and digits.x_train.max() == 1.0
  np.savez(tmp_path / 'floats.npz', x=np.full((10, 4, 4), 0.25))
  floats = data.load(load_config('ae', f'npz={tmp_path / "floats.npz"}').data)
  assert floats.train.dtype == np.float32 and floats.x_train.max() == 0.25


def test_uint8_on_the_device_gives_the_float32_metrics(uint8_npz, tmp_path, monkeypatch):
  config = small(load_config('vae', f'npz={uint8_npz}'), epochs=2)
  config.train.figures_every = 1  # the figure path converts x_fig too
  stored = data.load(config.data)
  as_float = dataclasses.replace(stored, train=stored.x_train, test=stored.x_test)
  seen = []
  replicate = program.Program.replicate
  monkeypatch.setattr(program.Program, 'replicate',
                      lambda self, tree: seen.append(jax.tree.map(lambda x: x.dtype, tree)) or replicate(self, tree))
  summaries = {}
  for name, dataset in (('uint8', stored), ('float32', as_float)):
    monkeypatch.setattr(engine.data, 'load', lambda _, dataset=dataset: dataset)
    summaries[name] = engine.train_and_evaluate(config, str(tmp_path / name), log=lambda line: None)
  assert seen[0] == (np.uint8, np.uint8) and seen[2] == (np.float32, np.float32)  # (train, test) on the device
  a, b = summaries['uint8'], summaries['float32']
  keys = [k for k in a if k.startswith(('train/', 'test/'))]
  assert 'test/nll' in keys and 'test/neg_elbo' in keys
  np.testing.assert_allclose([a[k] for k in keys], [b[k] for k in keys], rtol=1e-5)
  metrics_u8 = Workdir(str(tmp_path / 'uint8'), config).read_metrics()
  assert len(metrics_u8) == 2


def test_bfloat16_matmuls_train_like_float32():
  config = load_config('vae')
  config.train.num_epochs = 3
  dataset = data.load(config.data)
  histories = {}
  for dtype in ('float32', 'bfloat16'):
    config.model.dtype = dtype
    run, params, histories[dtype] = engine.fit(config, dataset)
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(np.float32)}
    loss, _ = run.family.objective(params, dataset.x_train[:4], jax.random.key(0), run.hp)
    assert loss.dtype == np.float32
    jaxpr = str(jax.make_jaxpr(run.family.objective)(params, dataset.x_train[:4], jax.random.key(0), run.hp))
    assert ('bf16' in jaxpr) == (dtype == 'bfloat16')
  f32, bf16 = (h[-1]['test/neg_elbo'] for h in (histories['float32'], histories['bfloat16']))
  assert bf16 < histories['bfloat16'][0]['test/neg_elbo']  # it trains
  assert abs(bf16 - f32) <= BF16_TOLERANCE * f32, (bf16, f32)


@pytest.mark.parametrize('name, overrides', [('conv_vae', {}), ('ae', {'tied': True}), ('aae', {}),
                                             ('vqvae', {'net': 'conv', 'code_layout': 'spatial',
                                                        'conv_channels': (8,)}),
                                             ('vqvae', {'net': 'mlp', 'code_layout': 'vectors'})])
def test_bfloat16_nets_keep_float32_params_and_outputs(name, overrides):
  config = load_config(name)
  config.model.dtype = 'bfloat16'
  for field, value in overrides.items():  # the VQ-VAE's fields are in its own section
    (config.vqvae if 'vqvae' in config and field in config.vqvae else config.model)[field] = value
  run = engine.make_run(config, (8, 8, 1))
  x_BxD = jax.numpy.full((2, 64), 0.5)
  # Jitted: one compilation each instead of one per operation (the dtypes are those of the eager calls).
  params = jax.jit(run.family.init)(jax.random.key(0), x_BxD)
  assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(np.float32)}
  z = jax.jit(run.family.encode)(params, x_BxD)
  assert z.dtype == jax.jit(run.family.decode)(params, z).dtype == np.float32
  assert 'bf16' in str(jax.make_jaxpr(run.family.encode)(params, x_BxD))


def test_sparse_autoencoder_refuses_bfloat16():
  """The SAE's encoder and decoder are plain float32 matrices: bfloat16 is refused, not silently ignored."""
  from aelab import config as config_lib
  config = load_config('sae_topk')
  config.model.dtype = 'bfloat16'
  with pytest.raises(config_lib.ConfigError, match='model.name=sae'):
    config_lib.validate(config)
