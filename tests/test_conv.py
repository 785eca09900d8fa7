"""The hand-written conv backward pass and the reshape max pool equal the generic ops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from grcnn_jax.models.conv import conv2d_same
from grcnn_jax.models.grcnn import max_pool_2x2


def lax_conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("ksize,cin,cout", [(3, 5, 7), (1, 6, 4), (5, 3, 3)])
def test_conv_gradients_equal_autodiff(ksize, cin, cout):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 6, 9, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(ksize, ksize, cin, cout)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(3, 6, 9, cout)), jnp.float32)

    def loss(conv, x, k):
        return jnp.sum(jnp.tanh(conv(x, k)) * t)

    np.testing.assert_allclose(conv2d_same(x, k), lax_conv(x, k), rtol=1e-6, atol=1e-5)
    ours = jax.grad(lambda x, k: loss(conv2d_same, x, k), (0, 1))(x, k)
    ref = jax.grad(lambda x, k: loss(lax_conv, x, k), (0, 1))(x, k)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_conv_gradients_inside_scan_equal_autodiff():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 5, 7, 4)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 4, 4)) * 0.3, jnp.float32)

    def loss(conv, k, x):
        def body(c, _):
            return jax.nn.relu(conv(c, k) + x), None
        out, _ = lax.scan(body, x, None, length=3)
        return jnp.sum(out ** 2)

    ours = jax.jit(jax.grad(lambda k, x: loss(conv2d_same, k, x), (0, 1)))(k, x)
    ref = jax.jit(jax.grad(lambda k, x: loss(lax_conv, k, x), (0, 1)))(k, x)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3 * float(jnp.abs(b).max()))


def test_conv_rejects_even_kernels():
    with pytest.raises(ValueError, match="odd kernel"):
        conv2d_same(jnp.zeros((1, 4, 4, 1)), jnp.zeros((2, 2, 1, 1)))


@pytest.mark.parametrize("shape", [(2, 8, 12, 3), (2, 7, 11, 3)])
@pytest.mark.parametrize("stride", [2, 1])
def test_max_pool_equals_flax(shape, stride):
    x = jnp.asarray(np.random.default_rng(2).normal(size=shape), jnp.float32)
    padding = ((0, 0), (0, 0)) if stride == 2 else ((0, 0), (1, 1))
    np.testing.assert_array_equal(max_pool_2x2(x, stride),
                                  nn.max_pool(x, (2, 2), (2, stride), padding))
