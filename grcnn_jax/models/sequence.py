"""The sequence head: bidirectional LSTMs over the backbone's frames.

Written for speed rather than with ``nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell))``, with
the same variables and the same results (tests/models/test_model.py compares the two): the input
projections of every frame and both directions are one matrix product before the recurrence,
and the two directions then advance together in one ``lax.scan`` (the forward direction at
frame t while the backward one is at frame F-1-t), each step one batched product of the
hidden states with the recurrent kernels. The generic version runs 2 x F steps per layer with
a small input product in each; on a 2-core CPU this one's gradient of the paper's two
BLSTM layers takes 172 ms where theirs took 226 (batch 32; benchmarks/NOTES.md).
The recurrence's backward is written by hand (``recurrence``: the recurrent kernel's gradient
as one product after the loop, NOTES.md 23).
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
    """The scan body over both directions: carry (h, c) [2, B, H] in ``_state_dtype``; input
    [2, B, 4H] in the compute dtype (``wh``'s), which the recurrent product also uses. Outputs
    the step's h, its gate pre-activations z and its cell state c (the backward's inputs)."""

    def step(carry, xw):
        h, c = carry
        z = xw + jnp.einsum("dbh,dhk->dbk", h.astype(wh.dtype), wh)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
        h = nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), (h, z, c)

    return step


def _state_dtype(wh: jax.Array):
    """The carried states' dtype: float32, or wider if the compute dtype is (float64 tests)."""
    return jnp.promote_types(jnp.float32, wh.dtype)


def _run(wh: jax.Array, xw: jax.Array):
    """The forward scan from zero states: (hs, zs, cs), each stacked over frames."""
    zeros = jnp.zeros((2, xw.shape[2], wh.shape[1]), _state_dtype(wh))
    _, (hs, zs, cs) = jax.lax.scan(_lstm_step(wh), (zeros, zeros), xw)
    return hs, zs, cs


# Frames per loop trip of the forward-only scan (inference): fully unrolled at the usual 26
# frames, the 2-core AVX-512 VM's two BLSTM layers take 5.3 instead of 9.3 ms each (batch 100;
# benchmarks/NOTES.md, 30). Training's scan stays rolled.
_FORWARD_UNROLL = 32


def _hidden_states(wh: jax.Array, xw: jax.Array) -> jax.Array:
    """The forward scan from zero states keeping only hs: what inference reads."""
    zeros = jnp.zeros((2, xw.shape[2], wh.shape[1]), _state_dtype(wh))
    step = _lstm_step(wh)

    def h_only(carry, x):
        carry, (h, _, _) = step(carry, x)
        return carry, h

    _, hs = jax.lax.scan(h_only, (zeros, zeros), xw, unroll=min(xw.shape[0], _FORWARD_UNROLL))
    return hs


@jax.custom_vjp
def recurrence(wh: jax.Array, xw: jax.Array) -> jax.Array:
    """Both directions' LSTM recurrences from zero states: recurrent kernels wh [2, H, 4H]
    and the input projections xw [F, 2, B, 4H] (compute dtype, gates i, f, g, o) -> hidden
    states hs [F, 2, B, H] (in ``_state_dtype``: float32, or wider), step t of direction d at
    ``hs[t, d]``.

    The backward pass is written by hand. Autodiff's accumulates the recurrent kernel's
    gradient inside the reverse loop (a [H, B] x [B, 4H] product and a read-modify-write of
    the whole [2, H, 4H] gradient per frame) and multiplies by the kernel's transpose without
    transposing it once. Here the loop carries (dh, dc) and returns each frame's gate
    gradients; the kernel gradient is one [H, F*B] x [F*B, 4H] product per direction after
    the loop (benchmarks/NOTES.md, 23). Equal to autodiff's to float64 rounding
    (tests/models/test_model.py).
    """
    return _hidden_states(wh, xw)


def _recurrence_forward(wh, xw):
    hs, zs, cs = _run(wh, xw)
    return hs, (wh, hs, zs, cs)


def _recurrence_backward(residuals, dhs):
    wh, hs, zs, cs = residuals
    state = _state_dtype(wh)
    wh_t = wh.swapaxes(1, 2)                       # [2, 4H, H], transposed once
    c_prev = jnp.concatenate([jnp.zeros_like(cs[:1]), cs[:-1]])

    def step(carry, inputs):
        dh, dc = carry
        z, c, c_before, dh_out = inputs
        i, f, g, o = jnp.split(z.astype(state), 4, axis=-1)
        si, sf, tg, so, tc = nn.sigmoid(i), nn.sigmoid(f), jnp.tanh(g), nn.sigmoid(o), jnp.tanh(c)
        dh = dh + dh_out
        dc = dc + dh * so * (1 - tc * tc)
        dz = jnp.concatenate([dc * tg * si * (1 - si), dc * c_before * sf * (1 - sf),
                              dc * si * (1 - tg * tg), dh * tc * so * (1 - so)], axis=-1)
        dz = dz.astype(wh.dtype)
        dh = jnp.einsum("dbk,dkh->dbh", dz, wh_t).astype(state)
        return (dh, dc * sf), dz

    zeros = jnp.zeros_like(dhs[0])
    _, dzs = jax.lax.scan(step, (zeros, zeros), (zs, cs, c_prev, dhs), reverse=True)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]]).astype(wh.dtype)
    return jnp.einsum("fdbh,fdbk->dhk", h_prev, dzs), dzs


recurrence.defvjp(_recurrence_forward, _recurrence_backward)


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
        cin = x.shape[-1]
        weights = [LSTMWeights(self.hidden, name=name)(cin) for name in ("forward", "backward")]
        wi, wh, bias = (jnp.stack(w).astype(self.dtype) for w in zip(*weights))
        # Every frame's input projection, both directions: one product. [F, 2, B, 4H]
        xw = jnp.einsum("bfc,dck->fdbk", x.astype(self.dtype), wi) + bias[None, :, None]
        # The backward direction reads the frames last to first.
        xw = jnp.stack([xw[:, 0], xw[::-1, 1]], axis=1)
        hs = recurrence(wh, xw)                                      # [F, 2, B, H]
        y = jnp.concatenate([hs[:, 0], hs[::-1, 1]], axis=-1).swapaxes(0, 1)   # [B, F, 2H]
        return nn.Dense(self.out_features, dtype=self.dtype, name="linear")(y)
