"""A 3x3 convolution by Winograd's minimal filtering F(2x2, 3x3), for inference.

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

`kanime.models.fused.fuse_generator` uses it for the generator's 3x3
convolutions on JAX, where it makes the paper generator faster at every batch
size (`benchmarks/generator_inference.py`).

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


def _input_transform(d0, d1, d2, d3):
    """`B^T d` along one axis, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _output_transform(m0, m1, m2, m3):
    """`A^T m` along one axis, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    return m0 + m1 + m2, m1 - m2 - m3


def winograd_kernel(kernel):
    """The `(4, 4, C, O)` transformed kernel `G g G^T` of a `(3, 3, C, O)` kernel.

    Examples:
        >>> winograd_kernel(np.ones((3, 3, 2, 1))).shape
        (4, 4, 2, 1)
    """
    kernel = np.asarray(kernel, "float64")
    if kernel.shape[:2] != (3, 3) or kernel.ndim != 4:
        raise ValueError(f"Expected a (3, 3, C, O) kernel. Received shape {kernel.shape}")
    return np.einsum("ai,ijco,bj->abco", G, kernel, G).astype("float32")


@keras.saving.register_keras_serializable(package="kanime")
class WinogradConv2D(keras.layers.Layer):
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

    def __init__(self, filters, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.use_bias = use_bias

    def build(self, input_shape):
        _, h, w, channels = input_shape
        if h is None or w is None or h % 2 or w % 2:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs an input of known, even height "
                f"and width. Received input shape {tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            shape=(4, 4, channels, self.filters), initializer="glorot_uniform", name="kernel"
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

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

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "use_bias": self.use_bias}
