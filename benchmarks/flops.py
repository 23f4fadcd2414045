"""Floating-point operations of a model's forward pass; shared by the benchmark scripts."""

import keras

from kanime.inference.winograd import WinogradConv2D, WinogradF4x4Conv2D


def forward_flops(model):
    """2 x the multiply-adds of the model's convolutions and Dense layers for one input.

    A `WinogradConv2D` counts its 16 matrix products per 2x2 output block and a
    `WinogradF4x4Conv2D` its 36 per 4x4 block, not the work of their transforms.
    """
    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * h * w * kh * kw * cin * cout
        elif isinstance(layer, (WinogradConv2D, WinogradF4x4Conv2D)):
            t, (_, _, cin, cout) = layer.output_tile, layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * (t + 2) ** 2 * (h // t) * (w // t) * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2 * cin * cout
    return total
