"""Analytic FLOPs of the GRCNN per image (a multiply-add counts 2), for benchmarks' MFU.

XLA's cost analysis is no substitute: it counts a while loop's body once, so the GRCL's
T iterations and the LSTMs' frames are undercounted (0.44 vs 1.71 GFLOP for the paper
model). Counted: convolutions, LSTM gate matmuls and the linear maps; BatchNorm,
activations, pooling and the loss are left out (a few per cent at most).
"""

from __future__ import annotations

import ml_collections

from grcnn_jax.models.grcnn import POOL_WIDTH_STRIDES, frames_for_width


def _conv(k: int, cin: int, cout: int, pixels: int) -> int:
    return 2 * k * k * cin * cout * pixels


def forward_flops(model: ml_collections.ConfigDict, num_classes: int, height: int = 32,
                  width: int = 100) -> int:
    """FLOPs of one image's forward pass through ``create_model(model, num_classes)``."""
    h, w = height, width
    total = _conv(3, 1, model.conv0_features, h * w)
    cin = model.conv0_features
    widths = [cin, *model.grcl_features]
    for i, stride in enumerate(POOL_WIDTH_STRIDES):
        h, w = h // 2, (w // 2 if stride == 2 else w + 1)
        if i == len(model.grcl_features):
            break
        cin, c = widths[i], widths[i + 1]
        total += _conv(3, cin, c, h * w)                       # wf
        if model.T > 0:
            iteration = _conv(3, c, c, h * w)                  # wr
            if model.gated:
                total += _conv(1, cin, c, h * w)               # wgf
                iteration += _conv(1, c, c, h * w)             # wgr
            total += model.T * iteration
    frames = frames_for_width(width)
    total += _conv(2, widths[-1], model.out_features, frames)  # conv4 (2x2 valid, height 1)
    hidden, features = model.hidden, model.out_features
    for out in (model.out_features, num_classes):              # the two BLSTMs + linear maps
        total += 2 * frames * 2 * 4 * hidden * (features + hidden)
        total += frames * 2 * (2 * hidden) * out
        features = out
    return total


def train_flops(model: ml_collections.ConfigDict, num_classes: int, height: int = 32,
                width: int = 100) -> int:
    """Forward + backward: the usual 3x the forward (the backward computes two products)."""
    return 3 * forward_flops(model, num_classes, height, width)
