"""The Winograd convolution and its hand-written backward pass, the 1x1 convolution's, the
first layer's shifted products, and the reshape max pool equal the generic ops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from grcnn_jax.models import conv as convs
from grcnn_jax.models.grcnn import max_pool_2x2


def lax_conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def winograd(x, k):
    return convs.conv(x, convs.prepare_kernel(k, "winograd"), "winograd")


# Even and odd sizes (odd ones crop the last tile), a single pixel, one row, one column.
SHAPES = [(3, 6, 10, 5, 7), (2, 5, 7, 3, 4), (1, 1, 1, 2, 3), (2, 1, 9, 4, 4), (2, 7, 1, 3, 2)]


@pytest.mark.parametrize("b,h,w,cin,cout", SHAPES)
def test_winograd_equals_direct_convolution_with_gradients(b, h, w, cin, cout):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(b, h, w, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(b, h, w, cout)), jnp.float32)

    def loss(conv, x, k):
        return jnp.sum(jnp.tanh(conv(x, k)) * t)

    ref = lax_conv(x, k)
    np.testing.assert_allclose(winograd(x, k), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    ours = jax.grad(lambda x, k: loss(winograd, x, k), (0, 1))(x, k)
    expect = jax.grad(lambda x, k: loss(lax_conv, x, k), (0, 1))(x, k)
    for a, e in zip(ours, expect, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=1e-5 * np.abs(e).max())


def test_winograd_is_exact_in_float64():
    """Not an approximation: in float64 it agrees with the direct convolution to ~1e-15."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(2, 6, 9, 3)))
        k = jnp.asarray(rng.normal(size=(3, 3, 3, 4)))
        np.testing.assert_allclose(winograd(x, k), lax_conv(x, k), rtol=0, atol=1e-12)


def test_winograd_gradients_inside_scan_with_a_shared_prepared_kernel():
    """As the GRCL uses it: the kernel transformed once, outside the loop."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 5, 7, 4)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 4, 4)) * 0.3, jnp.float32)

    def loss(impl, k, x):
        u = convs.prepare_kernel(k, impl)

        def body(c, _):
            return jax.nn.relu(convs.conv(c, u, impl) + x), None
        out, _ = lax.scan(body, x, None, length=3)
        return jnp.sum(out ** 2)

    ours = jax.jit(jax.grad(lambda k, x: loss("winograd", k, x), (0, 1)))(k, x)
    ref = jax.jit(jax.grad(lambda k, x: loss("xla", k, x), (0, 1)))(k, x)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(jnp.abs(b).max()))


def test_conv1x1_gradients_equal_autodiff():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 3, 5, 6)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 6, 4)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(2, 3, 5, 4)), jnp.float32)

    def loss(conv, x, k):
        return jnp.sum(jnp.tanh(conv(x, k)) * t)

    ours = jax.grad(lambda x, k: loss(lambda x, k: convs.conv1x1(x, k, jnp.float32), x, k),
                    (0, 1))(x, k)
    ref = jax.grad(lambda x, k: loss(lax_conv, x, k), (0, 1))(x, k)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_taps_equal_direct_convolution():
    rng = np.random.default_rng(0)
    for b, h, w, cout in [(3, 6, 10, 5), (1, 1, 1, 2), (2, 32, 100, 48)]:
        x = jnp.asarray(rng.normal(size=(b, h, w, 1)), jnp.float32)
        k = jnp.asarray(rng.normal(size=(3, 3, 1, cout)), jnp.float32)
        ref = lax_conv(x, k)
        np.testing.assert_allclose(jax.jit(convs.taps3x3)(x, k), ref, rtol=0,
                                   atol=1e-5 * np.abs(ref).max())
    with pytest.raises(ValueError, match="one input channel"):
        convs.taps3x3(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 3)))


def test_input_conv_is_flax_conv_in_training_and_inference():
    """conv0 has nn.Conv's variables, initial values and function, in training (XLA's
    convolution) and in inference (``taps3x3`` on the CPU)."""
    from grcnn_jax.models.grcl import GRCLOptions, default_kernel_init
    from grcnn_jax.models.grcnn import InputConv

    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 12, 1)), jnp.float32)
    flax_conv = nn.Conv(6, (3, 3), padding=1, kernel_init=default_kernel_init)
    ours = InputConv(6, GRCLOptions(conv_impl="winograd"))
    variables = flax_conv.init(jax.random.key(4), x)
    jax.tree_util.tree_map(np.testing.assert_array_equal, ours.init(jax.random.key(4), x),
                           variables)
    variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)    # a nonzero bias
    ref = flax_conv.apply(variables, x)
    for train in (False, True):
        np.testing.assert_allclose(jax.jit(ours.apply, static_argnums=2)(variables, x, train),
                                   ref, rtol=0, atol=1e-5 * np.abs(ref).max())
        program = str(jax.make_jaxpr(ours.apply, static_argnums=2)(variables, x, train))
        assert ("conv_general_dilated" in program) == train      # inference: the taps


def test_bad_kernel_and_impl_are_reported():
    with pytest.raises(ValueError, match="3x3 kernel"):
        convs.prepare_kernel(jnp.zeros((5, 5, 1, 1)), "winograd")
    with pytest.raises(ValueError, match="conv_impl='fft'"):
        convs.resolve_impl("fft")
    assert convs.resolve_impl("auto") == "winograd"          # the test suite runs on the CPU


@pytest.mark.parametrize("shape", [(2, 8, 12, 3), (2, 7, 11, 3)])
@pytest.mark.parametrize("stride", [2, 1])
def test_max_pool_equals_flax(shape, stride):
    x = jnp.asarray(np.random.default_rng(2).normal(size=shape), jnp.float32)
    padding = ((0, 0), (0, 0)) if stride == 2 else ((0, 0), (1, 1))
    np.testing.assert_array_equal(max_pool_2x2(x, stride),
                                  nn.max_pool(x, (2, 2), (2, stride), padding))
