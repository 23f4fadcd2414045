"""Floating-point operations of a model's forward pass; shared by the benchmark scripts."""

import keras


def forward_flops(model):
    """2 x the multiply-adds of the model's convolutions and Dense layers for one input."""
    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2 * cin * cout
    return total
