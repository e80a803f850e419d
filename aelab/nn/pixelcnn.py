"""A small gated PixelCNN over maps of discrete codes (a prior for a VQ-VAE's code map).

van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu (2016), Conditional Image Generation
with PixelCNN Decoders, Sec. 2.1-2.2 and Fig. 2: each layer has a vertical stack (a ``k x k`` convolution
masked to the rows above and the current row) and a horizontal stack (a ``1 x k`` convolution masked to the
pixels to the left: strictly left in the first layer, "mask A", the current pixel too after it, "mask B");
the vertical stack feeds the horizontal one through a ``1 x 1`` convolution after a shift down by one row,
so there is no blind spot; gates are ``tanh(a) * sigmoid(b)``; the horizontal stack is residual after the
first layer. The logits at position ``(i, j)`` depend only on the codes before it in raster order.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MASKS = ('vertical', 'horizontal_a', 'horizontal_b')


def causal_mask(kernel_h: int, kernel_w: int, kind: str) -> np.ndarray:
  """``kernel_h x kernel_w`` float32 mask: ``vertical`` keeps rows up to the centre (all columns),
  ``horizontal_a`` the columns left of the centre, ``horizontal_b`` the centre too."""
  mask = np.zeros((kernel_h, kernel_w), np.float32)
  ch, cw = kernel_h // 2, kernel_w // 2
  if kind == 'vertical':
    mask[:ch + 1] = 1.0
  elif kind in ('horizontal_a', 'horizontal_b'):
    mask[ch, :cw + (kind == 'horizontal_b')] = 1.0
  else:
    raise ValueError(f'Unknown mask kind {kind!r}; choose one of {MASKS}.')
  return mask


class MaskedConv(nn.Module):
  """A ``SAME``-padded stride-1 convolution with its kernel multiplied by :func:`causal_mask`."""
  features: int
  kernel_size: tuple[int, int]
  kind: str

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (kh, kw, x_BxHxWxC.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    mask = jnp.asarray(causal_mask(kh, kw, self.kind))[:, :, None, None]
    y = jax.lax.conv_general_dilated(x_BxHxWxC, kernel * mask, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias[None, None, None]


def gate(x: jax.Array) -> jax.Array:
  """``tanh(a) * sigmoid(b)`` of the two halves ``a, b`` of the channels (Eq. 2)."""
  a, b = jnp.split(x, 2, axis=-1)
  return jnp.tanh(a) * jax.nn.sigmoid(b)


def shift_down(x_BxHxWxC: jax.Array) -> jax.Array:
  """Row ``i`` of the output is row ``i - 1`` of the input (zeros in row 0)."""
  return jnp.pad(x_BxHxWxC, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


class GatedLayer(nn.Module):
  """One gated layer: ``(v, h) -> (v', h')`` (Fig. 2)."""
  channels: int
  kernel: int = 3
  first: bool = False

  @nn.compact
  def __call__(self, v: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    c, k = self.channels, self.kernel
    v_conv = MaskedConv(2 * c, (k, k), 'vertical')(v)
    h_conv = MaskedConv(2 * c, (1, k), 'horizontal_a' if self.first else 'horizontal_b')(h)
    h_conv = h_conv + nn.Conv(2 * c, (1, 1))(shift_down(v_conv))
    h_out = nn.Conv(c, (1, 1))(gate(h_conv))
    return gate(v_conv), h_out if self.first else h + h_out


class PixelCNN(nn.Module):
  """``__call__(codes_BxHxW int) -> logits_BxHxWxK``: the logits of each code given those before it."""
  num_codes: int
  channels: int = 64
  num_layers: int = 5
  kernel: int = 3

  @nn.compact
  def __call__(self, codes_BxHxW: jax.Array) -> jax.Array:
    x = nn.Embed(self.num_codes, self.channels)(codes_BxHxW)
    v, h = x, x
    for i in range(self.num_layers):
      v, h = GatedLayer(self.channels, self.kernel, first=i == 0)(v, h)
    hidden = nn.relu(nn.Conv(self.channels, (1, 1), name='hidden')(nn.relu(h)))
    return nn.Conv(self.num_codes, (1, 1), name='logits')(hidden)


def sample(model: PixelCNN, params, key: jax.Array, num: int, grid: tuple[int, int]) -> jax.Array:
  """``num x H x W`` int32 code maps drawn position by position in raster order (``H W`` passes of the
  net), each code from the softmax of its logits given the codes drawn before it."""
  height, width = grid

  def body(t, codes):
    i, j = t // width, t % width
    logits = model.apply(params, codes)[:, i, j]
    return codes.at[:, i, j].set(jax.random.categorical(jax.random.fold_in(key, t), logits).astype(jnp.int32))

  return jax.lax.fori_loop(0, height * width, body, jnp.zeros((num, height, width), jnp.int32))
