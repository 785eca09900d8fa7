"""The attention guide: a training-only decoder that reads the backbone's frames.

Guided training of CTC (GTC, Hu et al. 2020; PP-OCRv3 and v4 train their CTC readers so,
with an attention head that reading drops): beside the CTC branch, a small
attention decoder learns to spell each label from the backbone's features, and its
cross-entropy is added to the CTC loss, so that the features carry what an attention
model needs to find each character in turn. Reading never runs it: the GRCNN's output is
the CTC branch's alone, and a reader is loaded without the guide's variables
(``workdir.checkpoints.read_for_inference``), so it costs nothing after training.

The decoder is a pre-norm Transformer decoder (Vaswani et al. 2017): token and sinusoidal
position embeddings, ``layers`` blocks of causal self-attention, attention over the frames
and an MLP, then a linear map to the classes. Its alphabet is the CTC alphabet, the blank's
id (0) standing for the start of a word as input and its end as output
(``text.losses.teacher_tokens`` makes its inputs and targets, ``text.losses.guide_loss``
scores it).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
GUIDE = "guide"                     # the guide's variables: params['guide']


def without_guide(params: dict) -> dict:
    """``params`` less the guide's: what a reader keeps (the network that reading runs)."""
    return {k: v for k, v in params.items() if k != GUIDE}


def sinusoid(length: int, dim: int) -> jax.Array:
    """[length, dim] sinusoidal position codes (the Transformer's), float32."""
    position = jnp.arange(length, dtype=jnp.float32)[:, None]
    rate = jnp.exp(-jnp.log(10_000.0) * jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    codes = jnp.zeros((length, dim), jnp.float32)
    codes = codes.at[:, 0::2].set(jnp.sin(position * rate))
    return codes.at[:, 1::2].set(jnp.cos(position * rate[: dim // 2]))


class AttentionGuide(nn.Module):
    """Frames [B, F, C] and decoder inputs [B, N] -> logits [B, N, num_classes] (float32).

    Attributes:
      num_classes: the CTC alphabet's size (blank included).
      layers: decoder blocks.
      dim: the decoder's width (the frames are projected to it).
      heads: attention heads per attention.
    """

    num_classes: int
    layers: int = 2
    dim: int = 128
    heads: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, frames: jax.Array, inputs: jax.Array) -> jax.Array:
        d, dt = self.dim, self.dtype
        memory = nn.Dense(d, dtype=dt, name="memory")(frames)
        memory = memory + sinusoid(frames.shape[1], d).astype(dt)
        x = nn.Embed(self.num_classes, d, dtype=dt, name="embed")(inputs)
        x = x * jnp.sqrt(jnp.asarray(d, dt)) + sinusoid(inputs.shape[1], d).astype(dt)
        causal = nn.make_causal_mask(inputs)
        for i in range(self.layers):
            h = nn.LayerNorm(dtype=dt, name=f"norm{i}_self")(x)
            x = x + nn.MultiHeadDotProductAttention(self.heads, dtype=dt, name=f"self{i}")(
                h, h, mask=causal)
            h = nn.LayerNorm(dtype=dt, name=f"norm{i}_cross")(x)
            x = x + nn.MultiHeadDotProductAttention(self.heads, dtype=dt, name=f"cross{i}")(
                h, memory)
            h = nn.LayerNorm(dtype=dt, name=f"norm{i}_mlp")(x)
            h = nn.Dense(4 * d, dtype=dt, name=f"mlp{i}_in")(h)
            x = x + nn.Dense(d, dtype=dt, name=f"mlp{i}_out")(nn.gelu(h))
        x = nn.LayerNorm(dtype=dt, name="norm_out")(x)
        return nn.Dense(self.num_classes, dtype=dt, name="classes")(x).astype(jnp.float32)
