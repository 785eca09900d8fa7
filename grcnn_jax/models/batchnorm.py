"""BatchNorm over N, H, W that can take its batch statistics from outside.

The variables are ``nn.BatchNorm``'s (params ``scale``, ``bias``; batch_stats ``mean``,
``var``), and so is the arithmetic: statistics in float32 with the exact two-pass variance,
``(x - mean) * rsqrt(var + eps) * scale + bias``, running statistics that keep ``momentum`` of
their old value (Flax's convention: PyTorch's 0.1 is Flax's 0.9) and are not touched at init.

What it adds: ``stats``. In a GRCL every iteration t has its own BatchNorms ``bn_fu[t]`` and
``bn_gfu[t]``, but they normalize the same tensors (``wf * u`` and ``wgf * u``, fixed over the
iterations), so in training their batch statistics are the same T times over. The GRCL
computes them once, before its scan, and hands them to each iteration's BatchNorm: the same
results as T separate reductions (tests/models/test_golden.py), T - 1 fewer passes over the tensor
forward and backward.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance over all axes but the last, float32, two-pass."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    return mean, jnp.mean(jnp.square(x - mean), axes)


class BatchNorm(nn.Module):
    """y = (x - mean) * rsqrt(var + epsilon) * scale + bias over the last axis's channels.

    Attributes:
      use_running_average: eval mode (running statistics) if True, batch statistics if False.
      momentum, epsilon: as ``nn.BatchNorm``'s.
      dtype: the output's dtype (statistics are float32).
    """

    use_running_average: bool
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array,
                 stats: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        """x: [..., C]; stats: this batch's ``moments(x)`` when the caller has them already."""
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones_init(), (c,))
        bias = self.param("bias", nn.initializers.zeros_init(), (c,))
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, var = stats if stats is not None else moments(x)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        mul = jax.lax.rsqrt(var + self.epsilon) * scale
        y = (x.astype(mul.dtype) - mean) * mul + bias
        return y.astype(self.dtype)
