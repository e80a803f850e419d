"""Encoder and decoder networks (flax.linen). No losses here.

Shapes: inputs are flattened, ``x_BxD``; codes are ``z_BxZ``. The decoder returns the parameters of the
likelihood ``p(x|z)``: logits for a Bernoulli likelihood, the mean for a Gaussian / MSE one.
"""
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'identity': lambda x: x,
    'relu': nn.relu,
    'sigmoid': nn.sigmoid,
    'tanh': jnp.tanh,
    'elu': nn.elu,
    'gelu': nn.gelu,
    'softplus': nn.softplus,
    'leaky_relu': nn.leaky_relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Looks up an activation by name. Raises ValueError listing the known names."""
  if name not in ACTIVATIONS:
    raise ValueError(f'Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.')
  return ACTIVATIONS[name]


class MLP(nn.Module):
  """Dense layers of the given widths; ``activation`` between them, ``final_activation`` at the end.

  With no hidden widths and identity activations this is a single affine map (a linear autoencoder's
  encoder or decoder, Baldi & Hornik 1989). ``dtype``: the dtype the layers compute in (``bfloat16``
  for bfloat16 matmuls); the parameters stay float32 and the output is float32 either way.
  """
  widths: Sequence[int]
  activation: str = 'relu'
  final_activation: str = 'identity'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.widths):
      x = nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x)
      last = i == len(self.widths) - 1
      x = activation(self.final_activation if last else self.activation)(x)
    return x.astype(jnp.float32)


class Encoder(nn.Module):
  """MLP encoder ``x_BxD -> h_BxO`` with hidden widths ``hidden`` and ``out_dim`` outputs.

  For a deterministic autoencoder ``out_dim`` is the latent size and ``code_activation`` shapes the code
  (``sigmoid`` for a KL-sparsity code); a VAE asks for ``2 * latent_dim`` outputs (mean, log-variance).
  """
  hidden: Sequence[int]
  out_dim: int
  activation: str = 'relu'
  code_activation: str = 'identity'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxD: jax.Array) -> jax.Array:
    return MLP((*self.hidden, self.out_dim), self.activation, self.code_activation, self.dtype, name='mlp')(x_BxD)


class Decoder(nn.Module):
  """MLP decoder ``z_BxZ -> out_BxD`` with hidden widths ``hidden`` (listed from the code outwards)."""
  hidden: Sequence[int]
  out_dim: int
  activation: str = 'relu'
  output_activation: str = 'identity'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    return MLP((*self.hidden, self.out_dim), self.activation, self.output_activation, self.dtype, name='mlp')(z_BxZ)


class TiedDecoder(nn.Module):
  """Decoder whose weights are the transposed encoder kernels (tied weights); it owns only biases.

  Called as ``decoder(z_BxZ, encoder_kernels)`` with the encoder's kernels in encoder order.
  """
  activation: str = 'relu'
  output_activation: str = 'identity'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, encoder_kernels: Sequence[jax.Array]) -> jax.Array:
    h = z_BxZ.astype(self.dtype)
    kernels = list(reversed(encoder_kernels))
    for i, kernel in enumerate(kernels):
      bias = self.param(f'bias_{i}', nn.initializers.zeros, (kernel.shape[0],)).astype(self.dtype)
      h = h @ kernel.T.astype(self.dtype) + jnp.reshape(bias, (1,) * (h.ndim - 1) + bias.shape)  # no rank promotion
      last = i == len(kernels) - 1
      h = activation(self.output_activation if last else self.activation)(h)
    return h.astype(jnp.float32)


def check_conv_shape(image_shape: Sequence[int], num_layers: int) -> None:
  """Raises ValueError unless ``image_shape`` is ``(H, W, C)`` with H and W divisible by ``2**num_layers``
  (each conv layer halves the image; 28x28 and 32x32 take two layers, 8x8 digits two or three)."""
  factor = 2 ** num_layers
  if len(image_shape) != 3 or image_shape[0] % factor or image_shape[1] % factor:
    raise ValueError(f'model.net=conv needs images H x W x C with H and W divisible by {factor} '
                     f'({num_layers} stride-2 layers), got example shape {tuple(image_shape)}; use '
                     'model.net=mlp for tabular data, or fewer model.conv_channels.')


def image_patches(h_BxHxWxC: jax.Array, kernel_size: int, stride: int) -> jax.Array:
  """The ``kernel_size x kernel_size`` patches of a ``SAME``-padded image at the given stride, as
  ``B x H' x W' x (k * k * C)`` (``H' = ceil(H / stride)``), ordered like a ``(k, k, C, out)`` conv kernel."""
  _, height, width, _ = h_BxHxWxC.shape
  out_h, out_w = -(-height // stride), -(-width // stride)
  pads = [max((o - 1) * stride + kernel_size - n, 0) for o, n in ((out_h, height), (out_w, width))]
  h = jnp.pad(h_BxHxWxC, ((0, 0), (pads[0] // 2, pads[0] - pads[0] // 2), (pads[1] // 2, pads[1] - pads[1] // 2),
                          (0, 0)))
  return jnp.concatenate([h[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride]
                          for i in range(kernel_size) for j in range(kernel_size)], axis=-1)


class Conv(nn.Module):
  """2-D convolution with ``SAME`` padding, computed as a matmul over :func:`image_patches`.

  The same map, parameters (``kernel``: ``k x k x C_in x C_out``, ``bias``) and initialization as
  ``flax.linen.Conv``; inside the scanned epoch (``lax.scan``) XLA:CPU runs convolutions about ten times
  slower than in a plain jitted step, and this form avoids that.
  """
  features: int
  kernel_size: int
  stride: int = 1
  dtype: Any = jnp.float32  # of the computation; the parameters are float32

  @nn.compact
  def __call__(self, h_BxHxWxC: jax.Array) -> jax.Array:
    k, c_in = self.kernel_size, h_BxHxWxC.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (k, k, c_in, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    h_BxHxWxC, kernel, bias = nn.dtypes.promote_dtype(h_BxHxWxC, kernel, bias, dtype=self.dtype)
    out = image_patches(h_BxHxWxC, k, self.stride) @ kernel.reshape(k * k * c_in, self.features)
    return out + bias[None, None, None]


def conv_downsample(h_BxHxWxC: jax.Array, channels: Sequence[int], activation_name: str,
                    dtype: Any = jnp.float32) -> jax.Array:
  """One 4x4 stride-2 :class:`Conv` (``conv_{i}``, computing in ``dtype``) and ``activation_name`` per entry
  of ``channels``: ``B x H x W x C -> B x H / 2**L x W / 2**L x channels[-1]``. Call it inside a compact
  module."""
  h = h_BxHxWxC
  for i, ch in enumerate(channels):
    h = activation(activation_name)(Conv(ch, 4, stride=2, dtype=dtype, name=f'conv_{i}')(h))
  return h


def conv_upsample(h_BxhxwxC: jax.Array, channels: Sequence[int], num_channels: int, activation_name: str,
                  output_activation: str, dtype: Any = jnp.float32) -> jax.Array:
  """The mirror of :func:`conv_downsample`: per layer a 3x3 :class:`Conv` (``upconv_{i}``) to ``4 x`` the
  next layer's channels and :func:`depth_to_space`, back through ``channels`` to ``num_channels``
  (``output_activation`` last): ``B x h x w x C -> B x 2**L h x 2**L w x num_channels``."""
  h = h_BxhxwxC
  outs = (*channels[-2::-1], num_channels)
  for i, ch in enumerate(outs):
    h = depth_to_space(Conv(4 * ch, 3, dtype=dtype, name=f'upconv_{i}')(h))
    h = activation(output_activation if i == len(outs) - 1 else activation_name)(h)
  return h


class ConvEncoder(nn.Module):
  """Convolutional encoder ``x_BxD -> h_BxO`` for images ``image_shape = (H, W, C)`` (flattened input).

  One 4x4 stride-2 convolution per entry of ``channels`` (each halves H and W), then dense layers of
  widths ``hidden`` and ``out_dim`` outputs (``code_activation`` at the end), as in the DCGAN-style
  encoders of the VAE literature.
  """
  image_shape: Sequence[int]
  channels: Sequence[int]
  hidden: Sequence[int]
  out_dim: int
  activation: str = 'relu'
  code_activation: str = 'identity'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxD: jax.Array) -> jax.Array:
    check_conv_shape(self.image_shape, len(self.channels))
    h = conv_downsample(x_BxD.reshape(x_BxD.shape[0], *self.image_shape), self.channels, self.activation,
                        self.dtype)
    h = h.reshape(h.shape[0], -1)
    return MLP((*self.hidden, self.out_dim), self.activation, self.code_activation, self.dtype, name='mlp')(h)


def depth_to_space(h_BxHxWxC: jax.Array, factor: int = 2) -> jax.Array:
  """Rearranges ``B x H x W x (f*f*C)`` into ``B x fH x fW x C`` (pixel shuffle, Shi et al. 2016)."""
  b, height, width, channels = h_BxHxWxC.shape
  c = channels // (factor * factor)
  h = h_BxHxWxC.reshape(b, height, width, factor, factor, c).transpose(0, 1, 3, 2, 4, 5)
  return h.reshape(b, height * factor, width * factor, c)


class ConvDecoder(nn.Module):
  """Convolutional decoder ``z_BxZ -> out_BxD``, the mirror of :class:`ConvEncoder`.

  Dense layers of widths ``hidden`` (from the code outwards), a dense map to an ``H / 2**L x W / 2**L x
  channels[-1]`` feature map, then per layer a 3x3 convolution to ``4 x`` the next layer's channels and a
  :func:`depth_to_space` that doubles H and W (sub-pixel convolution, Shi et al. 2016), back through
  ``channels`` to ``C`` output channels (``output_activation``), flattened to ``D = H * W * C``. (A
  stride-2 transposed convolution computes the same kind of map but is several times slower on XLA:CPU.)
  """
  image_shape: Sequence[int]
  channels: Sequence[int]
  hidden: Sequence[int]
  activation: str = 'relu'
  output_activation: str = 'identity'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    check_conv_shape(self.image_shape, len(self.channels))
    height, width, num_channels = self.image_shape
    factor = 2 ** len(self.channels)
    small = (height // factor, width // factor, self.channels[-1])
    h = MLP((*self.hidden, small[0] * small[1] * small[2]), self.activation, self.activation, self.dtype,
            name='mlp')(z_BxZ)
    h = conv_upsample(h.reshape(h.shape[0], *small), self.channels, num_channels, self.activation,
                      self.output_activation, self.dtype)
    return h.reshape(h.shape[0], -1).astype(jnp.float32)


def make_encoder(net: str, data_shape: Sequence[int], hidden: Sequence[int], out_dim: int,
                 activation_name: str, code_activation: str, channels: Sequence[int] = (32, 64),
                 dtype: Any = jnp.float32) -> nn.Module:
  """The encoder for ``model.net``: :class:`Encoder` (``'mlp'``) or :class:`ConvEncoder` (``'conv'``,
  images of shape ``data_shape = (H, W, C)``), computing in ``dtype`` (float32 parameters and output).
  Raises ValueError for another name or a non-image shape."""
  if net == 'mlp':
    return Encoder(hidden, out_dim, activation_name, code_activation, dtype)
  if net == 'conv':
    check_conv_shape(data_shape, len(channels))
    return ConvEncoder(tuple(data_shape), tuple(channels), hidden, out_dim, activation_name, code_activation, dtype)
  raise ValueError(f'Unknown model.net {net!r}; choose mlp or conv.')


def make_decoder(net: str, data_shape: Sequence[int], hidden: Sequence[int], activation_name: str,
                 output_activation: str, channels: Sequence[int] = (32, 64), dtype: Any = jnp.float32) -> nn.Module:
  """The decoder for ``model.net`` (``hidden`` from the code outwards); see :func:`make_encoder`."""
  if net == 'mlp':
    return Decoder(hidden, math.prod(data_shape), activation_name, output_activation, dtype)
  if net == 'conv':
    check_conv_shape(data_shape, len(channels))
    return ConvDecoder(tuple(data_shape), tuple(channels), hidden, activation_name, output_activation, dtype)
  raise ValueError(f'Unknown model.net {net!r}; choose mlp or conv.')


class ConvMapEncoder(nn.Module):
  """Convolutional encoder to a map of codes, one ``code_dim`` vector per spatial position (the encoder of a
  VQ-VAE, van den Oord et al. 2017, Sec. 4): :func:`conv_downsample` over ``channels``, then a 1x1
  :class:`Conv` to ``code_dim``. ``x_BxD`` (flattened ``image_shape = (H, W, C)``) ``-> B x h x w x
  code_dim`` with ``h = H / 2**L``, ``w = W / 2**L``."""
  image_shape: Sequence[int]
  channels: Sequence[int]
  code_dim: int
  activation: str = 'relu'
  dtype: Any = jnp.float32  # of the computation; the parameters and the output are float32

  @nn.compact
  def __call__(self, x_BxD: jax.Array) -> jax.Array:
    check_conv_shape(self.image_shape, len(self.channels))
    h = conv_downsample(x_BxD.reshape(x_BxD.shape[0], *self.image_shape), self.channels, self.activation,
                        self.dtype)
    return Conv(self.code_dim, 1, dtype=self.dtype, name='to_code')(h).astype(jnp.float32)


class ConvMapDecoder(nn.Module):
  """The mirror of :class:`ConvMapEncoder`: a 3x3 :class:`Conv` from the ``B x h x w x code_dim`` map to
  ``channels[-1]``, then :func:`conv_upsample` to the image; returns ``out_BxD`` (flattened)."""
  image_shape: Sequence[int]
  channels: Sequence[int]
  activation: str = 'relu'
  output_activation: str = 'identity'
  dtype: Any = jnp.float32  # of the computation; the parameters and the output are float32

  @nn.compact
  def __call__(self, z_BxhxwxZ: jax.Array) -> jax.Array:
    h = activation(self.activation)(Conv(self.channels[-1], 3, dtype=self.dtype, name='from_code')(z_BxhxwxZ))
    h = conv_upsample(h, self.channels, self.image_shape[-1], self.activation, self.output_activation, self.dtype)
    return h.reshape(h.shape[0], -1).astype(jnp.float32)
