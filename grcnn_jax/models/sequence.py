"""The sequence head: bidirectional LSTMs over the backbone's frames."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


class BidirectionalLSTM(nn.Module):
    """[B, frames, Cin] -> [B, frames, out_features]: a BLSTM, then a per-frame linear map.

    The two directions' outputs (``hidden`` each) are concatenated before the
    linear map, as in CRNN and the seed. Flax's LSTM cell has one bias per gate
    (PyTorch's has two, ``b_ih`` and ``b_hh``, whose sum is all that matters), so
    it has ``2 x 4 x hidden`` fewer parameters than ``torch.nn.LSTM`` per layer.
    """

    hidden: int
    out_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def direction(name: str) -> nn.RNN:
            return nn.RNN(nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype, name=name))

        y = nn.Bidirectional(direction("forward"), direction("backward"))(x)
        return nn.Dense(self.out_features, dtype=self.dtype, name="linear")(y)
