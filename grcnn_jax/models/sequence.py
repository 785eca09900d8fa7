"""The sequence head: bidirectional LSTMs over the backbone's frames.

Written for speed rather than with ``nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell))``, with
the same variables and the same results (tests/test_model.py compares the two): the input
projections of every frame and both directions are one matrix product before the recurrence,
and the two directions then advance together in one ``lax.scan`` (the forward direction at
frame t while the backward one is at frame F-1-t), each step one batched product of the
hidden states with the recurrent kernels. The generic version runs 2 x F steps per layer with
a small input product in each; on a 2-core CPU this one's gradient of the paper's two
BLSTM layers takes 172 ms where theirs took 226 (batch 32; grcnn_jax/benchmarks/NOTES.md).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
GATES = "ifgo"      # input, forget, cell candidate, output: Flax's OptimizedLSTMCell's order


class _Dense(nn.Module):
    """The variables of one of the cell's dense maps (``kernel`` [in, out], ``bias`` [out])."""

    features: int
    use_bias: bool
    kernel_init: Callable

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array | None]:
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features))
        bias = (self.param("bias", nn.initializers.zeros_init(), (self.features,))
                if self.use_bias else None)
        return kernel, bias


class LSTMWeights(nn.Module):
    """One direction's LSTM variables, laid out as Flax's ``OptimizedLSTMCell`` lays them out
    (``ii, if, ig, io``: input kernels [in, H]; ``hi, hf, hg, ho``: recurrent kernels [H, H]
    with the gates' biases), returned fused: input kernel [in, 4H], recurrent kernel [H, 4H],
    bias [4H], gates in the order i, f, g, o. Initializers as the cell's: LeCun normal for the
    input kernels, orthogonal for the recurrent ones, zero biases."""

    hidden: int

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        h = self.hidden
        wi = [_Dense(h, False, nn.initializers.lecun_normal(), name=f"i{g}")(in_features)[0]
              for g in GATES]
        wh, bh = zip(*(_Dense(h, True, nn.initializers.orthogonal(), name=f"h{g}")(h)
                       for g in GATES))
        return jnp.concatenate(wi, 1), jnp.concatenate(wh, 1), jnp.concatenate(bh)


def _lstm_step(wh: jax.Array):
    """The scan body over both directions: carry (h, c) float32 [2, B, H]; input [2, B, 4H]
    in the compute dtype (``wh``'s), which the recurrent product also uses."""

    def step(carry, xw):
        h, c = carry
        z = xw + jnp.einsum("dbh,dhk->dbk", h.astype(wh.dtype), wh)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
        h = nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    return step


class BidirectionalLSTM(nn.Module):
    """[B, frames, Cin] -> [B, frames, out_features]: a BLSTM, then a per-frame linear map.

    The two directions' outputs (``hidden`` each) are concatenated before the linear map, as
    in CRNN and the seed. Variables: ``forward`` and ``backward`` (see ``LSTMWeights``: one
    bias per gate; PyTorch's LSTM has two, ``b_ih`` and ``b_hh``, whose sum is all that
    matters, so it has ``2 x 4 x hidden`` more parameters per layer) and ``linear``.
    """

    hidden: int
    out_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, frames, cin = x.shape
        weights = [LSTMWeights(self.hidden, name=name)(cin) for name in ("forward", "backward")]
        wi, wh, bias = (jnp.stack(w).astype(self.dtype) for w in zip(*weights))
        # Every frame's input projection, both directions: one product. [F, 2, B, 4H]
        xw = jnp.einsum("bfc,dck->fdbk", x.astype(self.dtype), wi) + bias[None, :, None]
        # The backward direction reads the frames last to first.
        xw = jnp.stack([xw[:, 0], xw[::-1, 1]], axis=1)
        zeros = jnp.zeros((2, b, self.hidden), jnp.float32)
        _, hs = jax.lax.scan(_lstm_step(wh), (zeros, zeros), xw)    # [F, 2, B, H]
        y = jnp.concatenate([hs[:, 0], hs[::-1, 1]], axis=-1).swapaxes(0, 1)   # [B, F, 2H]
        return nn.Dense(self.out_features, dtype=self.dtype, name="linear")(y)
