"""Encoder/decoder shapes, the linear case, tied weights, the convolution as a matmul over patches."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import config as aelab_config
from aelab.nn import nets
from aelab.models import ae, vae


def _ae(**model):
  config = aelab_config.base()
  config.model.update(model)
  return ae.build(config, 10)


def test_shapes_and_parameter_count():
  model = _ae(hidden=(8, 6), latent_dim=3)
  x = jnp.ones((4, 10))
  params = ae.init(model, jax.random.key(0), x)
  z, out = model.apply(params, x)
  assert z.shape == (4, 3) and out.shape == (4, 10)
  widths = [10, 8, 6, 3, 6, 8, 10]
  expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
  assert sum(p.size for p in jax.tree.leaves(params)) == expected


def test_linear_autoencoder_is_affine():
  model = _ae(hidden=(), latent_dim=2, activation='identity', likelihood='mse', output_activation='identity')
  params = ae.init(model, jax.random.key(0), jnp.ones((1, 10)))
  x1, x2 = jax.random.normal(jax.random.key(1), (2, 1, 10))
  f = lambda x: model.apply(params, x)[1]
  f0 = f(jnp.zeros((1, 10)))
  np.testing.assert_allclose(f(x1 + x2) - f0, (f(x1) - f0) + (f(x2) - f0), atol=1e-5)


def test_tied_decoder_uses_transposed_encoder_kernels():
  model = _ae(hidden=(6,), latent_dim=3, tied=True, activation='identity', output_activation='identity')
  x = jax.random.normal(jax.random.key(1), (2, 10))
  params = ae.init(model, jax.random.key(0), x)
  decoder_leaves = jax.tree.leaves(params['params']['decoder'])
  assert sorted(p.shape for p in decoder_leaves) == [(6,), (10,)]  # biases only
  mlp = params['params']['encoder']['mlp']
  z = model.apply(params, x)[0]
  expected = (z @ mlp['dense_1']['kernel'].T) @ mlp['dense_0']['kernel'].T  # decoder biases start at 0
  np.testing.assert_allclose(model.apply(params, z, method=ae.Model.decode), expected, atol=1e-5)
  grads = jax.grad(lambda p: jnp.sum(model.apply(p, x)[1] ** 2))(params)
  assert float(jnp.abs(grads['params']['encoder']['mlp']['dense_0']['kernel']).sum()) > 0


def test_vae_encoder_splits_mean_and_log_variance():
  config = aelab_config.base('vae')
  config.model.update(hidden=(16,), latent_dim=4, likelihood='bernoulli')
  model = vae.build(config, 10)
  x = jnp.ones((3, 10))
  params = vae.init(model, jax.random.key(0), x)
  mean, log_var = model.apply(params, x, method=vae.Model.encode)
  assert mean.shape == log_var.shape == (3, 4)
  assert not np.allclose(mean, log_var)


def test_unknown_activation():
  with pytest.raises(ValueError, match='relu'):
    nets.activation('swishy')


def test_conv_net_refuses_odd_image_sizes():
  with pytest.raises(ValueError, match='divisible by 4'):
    nets.check_conv_shape((30, 30, 1), 2)
  nets.check_conv_shape((28, 28, 1), 2)  # 28 = 4 * 7
  with pytest.raises(ValueError, match='model.net=mlp'):
    nets.check_conv_shape((64,), 2)


@pytest.mark.parametrize('kernel_size,stride,shape',
                         [(4, 2, (2, 8, 8, 3)), (3, 1, (2, 7, 7, 5)), (4, 2, (1, 28, 28, 1))])
def test_patch_conv_equals_flax_conv(kernel_size, stride, shape):
  x = jax.random.normal(jax.random.key(0), shape)
  ours = nets.Conv(6, kernel_size, stride)
  params = jax.jit(ours.init)(jax.random.key(1), x)
  params = jax.tree.map(lambda p: p + 0.1, params)  # a nonzero bias too
  reference = nn.Conv(6, (kernel_size, kernel_size), strides=(stride, stride), padding='SAME')
  np.testing.assert_allclose(jax.jit(ours.apply)(params, x), jax.jit(reference.apply)(params, x), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(nets.depth_to_space(jnp.arange(8.0).reshape(1, 1, 1, 8))[0, :, :, 1],
                             [[1.0, 3.0], [5.0, 7.0]])
