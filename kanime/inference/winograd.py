"""3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3), for inference.

A 3x3 convolution makes each 2x2 block of its output from the 4x4 block of
input around it. Done directly that is 36 multiply-adds per input and output
channel; Winograd's F(2x2, 3x3) does it in 16, by moving both the input block
and the kernel into a transformed space where the convolution becomes an
elementwise product (Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016):

    Y = A^T [ (G g G^T) * (B^T d B) ] A

with `g` the 3x3 kernel, `d` a 4x4 input block and `Y` the 2x2 output block.
Summed over input channels, the elementwise product is 16 matrix products, one
per position of the 4x4 transformed block, each `(blocks, C) @ (C, O)`: the
2.25 times fewer operations of a convolution run as plain matrix products,
which both backends' CPU kernels run near their peak. The transforms only add
and subtract.

The kernel transform `G g G^T` is done once, when the layer is made from a
trained kernel (`winograd_kernel`). The result equals the direct convolution
to float32 rounding (the transforms' coefficients are 0, 1/2 and 1).

`kanime.inference.fused.fuse_generator` uses it for the generator's 3x3
convolutions on JAX, where it makes the paper generator faster at every batch
size (`benchmarks/generator_inference.py`).

F(4x4, 3x3) makes 4x4 output blocks from 6x6 input blocks in 36 products, 4
times fewer than the direct convolution. `WinogradF4x4Conv2D` computes it in
the few large operations TensorFlow Lite runs best; `kanime.inference.tflite` uses it for
the generator's upsampling convolutions.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> kernel = rng.standard_normal((3, 3, 4, 5)).astype("float32")
    >>> layer = WinogradConv2D(5)
    >>> x = rng.standard_normal((1, 8, 6, 4)).astype("float32")
    >>> layer.build(x.shape)
    >>> layer.set_weights([winograd_kernel(kernel), np.zeros(5, "float32")])
    >>> direct = keras.ops.conv(x, kernel, padding="same")
    >>> bool(np.abs(keras.ops.convert_to_numpy(layer(x) - direct)).max() < 1e-4)
    True
"""

import keras
import numpy as np
from keras import ops

# F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A.
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
# F(4x4, 3x3), from 6x6 input blocks (Lavin and Gray's choice of points 0, +-1, +-2).
B4_T = np.array(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
)  # fmt: skip
G4 = np.array(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
)  # fmt: skip
A4_T = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
)


def _input_transform(d0, d1, d2, d3):
    """`B^T d` along one axis, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _output_transform(m0, m1, m2, m3):
    """`A^T m` along one axis, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    return m0 + m1 + m2, m1 - m2 - m3


def winograd_kernel(kernel, output_tile=2):
    """The transformed kernel `G g G^T` of a `(3, 3, C, O)` kernel.

    Args:
        kernel: a `(3, 3, C, O)` convolution kernel.
        output_tile: 2 for F(2x2, 3x3) (`WinogradConv2D`), which makes a `(4, 4, C, O)`
            kernel, or 4 for F(4x4, 3x3) (`WinogradF4x4Conv2D`), a `(6, 6, C, O)` one.

    Examples:
        >>> winograd_kernel(np.ones((3, 3, 2, 1))).shape
        (4, 4, 2, 1)
        >>> winograd_kernel(np.ones((3, 3, 2, 1)), output_tile=4).shape
        (6, 6, 2, 1)
    """
    kernel = np.asarray(kernel, "float64")
    if kernel.shape[:2] != (3, 3) or kernel.ndim != 4:
        raise ValueError(f"Expected a (3, 3, C, O) kernel. Received shape {kernel.shape}")
    g = {2: G, 4: G4}.get(output_tile)
    if g is None:
        raise ValueError(f"`output_tile` must be 2 or 4. Received {output_tile!r}")
    return np.einsum("ai,ijco,bj->abco", g, kernel, g).astype("float32")


class _WinogradBase(keras.layers.Layer):
    """What both Winograd layers share: their weights, checks, output shape and config."""

    output_tile = None  # the side of the output block each input block makes

    def __init__(self, filters, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.use_bias = use_bias

    def build(self, input_shape):
        _, h, w, channels = input_shape
        tile = self.output_tile
        if h is None or w is None or h % tile or w % tile:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs an input whose height and width "
                f"are known multiples of {tile}. Received input shape {tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            shape=(tile + 2, tile + 2, channels, self.filters),
            initializer="glorot_uniform",
            name="kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="kanime")
class WinogradConv2D(_WinogradBase):
    """A 3x3, stride 1, `"same"`-padded convolution computed by Winograd's F(2x2, 3x3).

    It computes what `keras.layers.Conv2D(filters, 3, padding="same")` computes,
    on inputs of even height and width, from the transformed kernel
    (`winograd_kernel` of the convolution's kernel).

    Args:
        filters: the number of output channels.
        use_bias: whether a bias is added.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Examples:
        >>> layer = WinogradConv2D(8)
        >>> tuple(layer(np.zeros((2, 16, 16, 3), "float32")).shape)
        (2, 16, 16, 8)
        >>> tuple(layer.kernel.shape)
        (4, 4, 3, 8)
    """

    output_tile = 2

    def call(self, x):
        _, h, w, channels = x.shape
        x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        # B^T d B for every 4x4 block at stride 2: rows first, then columns.
        rows = _input_transform(*(x[:, k : k + h : 2] for k in range(4)))
        blocks = []
        for row in rows:
            blocks.extend(_input_transform(*(row[:, :, k : k + w : 2] for k in range(4))))
        v = ops.reshape(ops.stack(blocks, axis=0), (16, -1, channels))
        m = ops.matmul(v, ops.reshape(self.kernel, (16, channels, self.filters)))
        m = ops.reshape(m, (4, 4, -1, self.filters))
        # A^T M A: columns of each row first, then rows.
        cols = [_output_transform(*(m[i, j] for j in range(4))) for i in range(4)]
        y = [_output_transform(*(cols[i][q] for i in range(4))) for q in range(2)]  # y[q][p]
        out = ops.stack([ops.stack([y[0][p], y[1][p]], axis=1) for p in range(2)], axis=1)
        out = ops.reshape(out, (-1, h // 2, w // 2, 2, 2, self.filters))
        out = ops.reshape(ops.transpose(out, (0, 1, 3, 2, 4, 5)), (-1, h, w, self.filters))
        return out + self.bias if self.use_bias else out


@keras.saving.register_keras_serializable(package="kanime")
class WinogradF4x4Conv2D(_WinogradBase):
    """A 3x3, stride 1, `"same"`-padded convolution by Winograd's F(4x4, 3x3).

    Each 4x4 block of output comes from the 6x6 block of input around it, in 36
    multiply-adds per input and output channel instead of 144: 4 times fewer than the
    direct convolution, against F(2x2, 3x3)'s 2.25. The transforms' coefficients
    (up to 8 and 1/24) cost some float32 precision: the result differs from the
    direct convolution by a few millionths of its largest value, against F(2x2, 3x3)'s
    few ten-millionths.

    It is laid out for TensorFlow Lite, whose XNNPACK kernels run each step as one
    operation, where `WinogradConv2D`'s many slices would each cost a pass over memory:

    1. the input transform `B^T d B` of every 6x6 block at stride 4 is one depthwise
       convolution with 36 outputs per channel;
    2. the 36 products with the transformed kernel are one batched matrix product;
    3. the output transform `A^T M A` is one matrix product.

    `kanime.inference.tflite.prepare_for_tflite` uses it for the generator's upsampling
    convolutions, which make 4 times as many channels as they take: with fewer output
    channels the transforms cost more than they save (`benchmarks/tflite_winograd.py`).

    Args:
        filters: the number of output channels.
        use_bias: whether a bias is added.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> kernel = rng.standard_normal((3, 3, 4, 5)).astype("float32")
        >>> layer = WinogradF4x4Conv2D(5, use_bias=False)
        >>> x = rng.standard_normal((2, 8, 12, 4)).astype("float32")
        >>> layer.build(x.shape)
        >>> layer.set_weights([winograd_kernel(kernel, output_tile=4)])
        >>> direct = keras.ops.conv(x, kernel, padding="same")
        >>> tuple(layer(x).shape)
        (2, 8, 12, 5)
        >>> bool(np.abs(keras.ops.convert_to_numpy(layer(x) - direct)).max() < 1e-3)
        True
    """

    output_tile = 4

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[-1]
        # B^T d B as a depthwise kernel: input (i, j) -> output channel (c, 6 * a + b).
        transform = np.einsum("ai,bj->ijab", B4_T, B4_T).reshape(6, 6, 1, 36)
        self._input_transform = np.tile(transform, (1, 1, channels, 1)).astype("float32")
        output_transform = np.einsum("pi,qj->pqij", A4_T, A4_T).reshape(16, 36)
        self._output_transform = output_transform.astype("float32")

    def call(self, x):
        _, h, w, channels = x.shape
        rows, cols = h // 4, w // 4
        x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        v = ops.depthwise_conv(x, self._input_transform, strides=4, padding="valid")
        # The batch stays the leading axis, the one TensorFlow Lite lets vary.
        v = ops.reshape(v, (-1, rows * cols, channels, 36))
        v = ops.transpose(v, (0, 3, 1, 2))  # (n, 36, blocks, C)
        m = ops.matmul(v, ops.reshape(self.kernel, (36, channels, self.filters)))
        m = ops.reshape(m, (-1, 36, rows * cols * self.filters))
        y = ops.matmul(self._output_transform, m)  # (n, 16, blocks * O)
        y = ops.reshape(y, (-1, 4, 4, rows, cols, self.filters))  # (n, p, q, row, col, O)
        y = ops.reshape(ops.transpose(y, (0, 3, 1, 4, 2, 5)), (-1, h, w, self.filters))
        return y + self.bias if self.use_bias else y
