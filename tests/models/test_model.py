"""Shapes, parameter counts and properties of the GRCNN model (paper config only shape-checked)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from grcnn_jax.models import (GRCL, GRCNN, BidirectionalLSTM, GRCLOptions, create_model,
                              frames_for_width)

NUM_CLASSES = 37


def n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def paper_param_count(T: int, hidden: int, classes: int, gated: bool = True,
                      share: bool = True) -> int:
    """Counted from the paper's layer list, independently of the model code."""
    count = 3 * 3 * 1 * 64 + 64                               # conv0 (kernel + bias)
    for cin, c in ((64, 64), (64, 128), (128, 256)):
        count += 9 * cin * c + 2 * c                          # wf, bn_init
        if T == 0:
            continue
        recurrent = 9 * c * c + (c * c if gated else 0)       # wr (+ wgr)
        count += (cin * c if gated else 0)                    # wgf
        count += recurrent * (1 if share else T)
        count += T * 2 * c * (5 if gated else 2)              # per-iteration BatchNorms
    count += 2 * 2 * 256 * 512 + 2 * 512                      # conv4 (no bias), bn4
    for cin, cout in ((512, 512), (512, classes)):
        count += 2 * (4 * hidden * (cin + hidden) + 4 * hidden)   # two directions, one bias/gate
        count += 2 * hidden * cout + cout                          # linear
    return count


def init_shapes(model, batch=2, width=100):
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((batch, 32, width), jnp.uint8))


@pytest.mark.parametrize("T,gated,share", [(5, True, True), (3, True, False), (5, False, True),
                                           (0, True, True)])
def test_paper_param_count(T, gated, share):
    cfg = load_config("grcl").model
    cfg.T, cfg.gated, cfg.share = T, gated, share
    variables = init_shapes(create_model(cfg, NUM_CLASSES))
    assert n_params(variables["params"]) == paper_param_count(T, cfg.hidden, NUM_CLASSES, gated,
                                                              share)


def test_paper_config_shapes():
    model = create_model(load_config("grcl").model, NUM_CLASSES)
    images = jnp.zeros((3, 32, 100), jnp.uint8)
    variables = init_shapes(model, batch=3)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, images)
    assert logits.shape == (3, 26, NUM_CLASSES) and logits.dtype == jnp.float32
    grcl1 = variables["params"]["backbone"]["grcl1"]
    assert grcl1["iterations"]["bn_fu"]["scale"].shape == (5, 64)
    assert grcl1["wr"].shape == (3, 3, 64, 64)                 # shared across iterations
    stats = variables["batch_stats"]["backbone"]["grcl3"]["iterations"]["bn_gx"]["var"]
    assert stats.shape == (5, 256)


@pytest.mark.parametrize("width,frames", [(100, 26), (64, 17), (160, 41)])
def test_frames_follow_width(width, frames):
    model = GRCNN(NUM_CLASSES, conv0_features=4, grcl_features=(4, 4, 4), out_features=8,
                  hidden=4, options=GRCLOptions(T=1))
    variables = init_shapes(model, width=width)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                            jnp.zeros((2, 32, width), jnp.uint8))
    assert logits.shape == (2, frames, NUM_CLASSES)
    assert frames_for_width(width) == frames


def test_wrong_height_is_a_clear_error():
    model = GRCNN(NUM_CLASSES, conv0_features=4, grcl_features=(4, 4, 4), out_features=8,
                  hidden=4, options=GRCLOptions(T=1))
    with pytest.raises(ValueError, match="input height 32"):
        jax.eval_shape(
            model.init, jax.random.key(0), jnp.zeros((1, 64, 100), jnp.uint8))


def tiny(**options):
    return GRCNN(NUM_CLASSES, conv0_features=8, grcl_features=(8, 8, 8), out_features=16,
                 hidden=8, options=GRCLOptions(T=2, **options))


def test_uint8_and_float_inputs_agree():
    model = tiny()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 100), dtype=np.uint8)
    variables = jax.jit(model.init)(jax.random.key(1), images)
    apply = jax.jit(model.apply)
    a = apply(variables, images)
    b = apply(variables, jnp.asarray(images, jnp.float32)[..., None] / 127.5 - 1.0)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
    model = tiny(dtype=jnp.bfloat16)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 100), dtype=np.uint8)
    variables = jax.jit(model.init)(jax.random.key(0), images)
    assert {x.dtype for x in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    logits_bf16 = jax.jit(model.apply)(variables, images)
    logits_f32 = jax.jit(tiny().apply)(variables, images)
    assert logits_bf16.dtype == jnp.float32
    rel = np.linalg.norm(logits_bf16 - logits_f32) / np.linalg.norm(logits_f32)
    assert 0 < rel < 5e-2


@pytest.mark.parametrize("option", [{"remat": "none"}, {"remat": "full"},
                                    {"scan_unroll": 2}, {"scan_unroll": 3}, {"conv_impl": "xla"},
                                    {"share": False}])
def test_remat_unroll_conv_impl_and_untying_change_nothing(option):
    """Loss and gradients equal the default's (untied: with every iteration's kernels equal to
    the shared ones, whose gradient is then the sum of theirs). Compared in float64: in
    float32 the gradient of a BatchNorm scale that a later BatchNorm makes (nearly) irrelevant
    is ill-conditioned, ~1e-2 of its size off the float64 truth whichever way it is computed."""
    x = np.random.default_rng(0).normal(size=(2, 6, 10, 3))
    with jax.enable_x64(True):
        base = GRCL(8, GRCLOptions(T=3, dtype=jnp.float64, conv_impl="winograd"))
        variables = jax.tree.map(lambda v: v.astype(jnp.float64),
                                 jax.jit(base.init)(jax.random.key(0), x))

        def value_and_grad(model, params):
            def loss(params):
                out, _ = model.apply({**variables, "params": params}, x, train=True,
                                     mutable=["batch_stats"])
                return jnp.sum(out ** 2)
            return jax.jit(jax.value_and_grad(loss))(params)

        ref_loss, ref_grads = value_and_grad(base, variables["params"])
        params = variables["params"]
        if option.get("share") is False:
            params = dict(params)
            params["iterations"] = {**params["iterations"],
                                    **{k: jnp.stack([params.pop(k)] * 3) for k in ("wr", "wgr")}}
        model = GRCL(8, GRCLOptions(T=3, dtype=jnp.float64, **{"conv_impl": "winograd", **option}))
        loss, grads = value_and_grad(model, params)
        if option.get("share") is False:
            grads = dict(grads)
            iterations = dict(grads["iterations"])
            grads.update({k: iterations.pop(k).sum(0) for k in ("wr", "wgr")},
                         iterations=iterations)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), grads, ref_grads)


@pytest.mark.parametrize("T,unroll,train,preset", [(1, 0, True, False), (2, 2, True, False),
                                                   (2, 0, False, False), (1, 0, True, True),
                                                   (2, 0, True, True)])
def test_jitted_backbone_gradient_equals_finite_differences(T, unroll, train, preset,
                                                            monkeypatch):
    """Guards against a miscompile met in jax 0.10.2: XLA:CPU got the jitted gradient of a
    reshape-and-max pool wrong (off by O(1)) after a GRCL's BatchNorm + ReLU when the
    iterations were unrolled (T = 1 always is). Float64 central differences along random
    directions agree with a right gradient to ~1e-9. ``preset``: compiled with the options
    the train step is compiled with (``process.step_compiler_options``)."""
    from grcnn_jax import process
    from grcnn_jax.models import Backbone

    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(2, 32, 20, 1)))
        model = Backbone(4, (4, 4, 8), 8, GRCLOptions(T=T, scan_unroll=unroll, dtype=jnp.float64))
        variables = jax.tree.map(lambda v: v.astype(jnp.float64),
                                 jax.jit(model.init)(jax.random.key(0), x))

        @jax.jit
        def loss(x):
            out = model.apply(variables, x, train=train, mutable=["batch_stats"])[0]
            return jnp.sum(jnp.sin(out[:, 0, 3]))

        # conftest names the default preset in XLA_FLAGS for the suite's own train steps.
        monkeypatch.setenv("XLA_FLAGS", " ".join(
            f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_cpu_opt_preset" not in f))
        options = process.step_compiler_options() if preset else None
        if preset and options is None:
            pytest.skip("the train step gets no compiler options off the CPU")
        grad = jax.jit(jax.grad(loss)).lower(x).compile(compiler_options=options)(x)
        for _ in range(2):
            d = jnp.asarray(rng.normal(size=x.shape))
            eps = 1e-6
            fd = (loss(x + eps * d) - loss(x - eps * d)) / (2 * eps)
            np.testing.assert_allclose(jnp.vdot(grad, d), fd, rtol=1e-6)


def test_untied_iterations_get_distinct_kernels():
    model = GRCL(4, GRCLOptions(T=3, share=False))
    variables = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4, 4, 2)))
    wr = np.asarray(variables["params"]["iterations"]["wr"])
    assert wr.shape == (3, 3, 3, 4, 4) and "wr" not in variables["params"]
    assert not np.allclose(wr[0], wr[1])


def test_blstm_is_bidirectional():
    """Frame 0's output depends on the last frame (backward LSTM) and vice versa."""
    layer = BidirectionalLSTM(hidden=4, out_features=3)
    x = np.random.default_rng(0).normal(size=(1, 6, 5)).astype(np.float32)
    variables = jax.jit(layer.init)(jax.random.key(0), x)
    jac = jax.jit(jax.jacobian(lambda x: layer.apply(variables, x)))(x)   # [1,6,3, 1,6,5]
    dependence = np.abs(np.asarray(jac)).sum(axis=(0, 2, 3, 5))    # [out frame, in frame]
    assert dependence[0, -1] > 0 and dependence[-1, 0] > 0
    # The linear map sees both directions' hidden states: 2 x hidden inputs.
    assert variables["params"]["linear"]["kernel"].shape == (8, 3)


def test_blstm_equals_flax_reference_layer():
    """Same variables (checkpoints load either way) and the same function as
    ``nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell))`` + a linear map."""
    import flax.linen as nn

    class Reference(nn.Module):
        @nn.compact
        def __call__(self, x):
            def direction(name):
                return nn.RNN(nn.OptimizedLSTMCell(5, name=name))
            y = nn.Bidirectional(direction("forward"), direction("backward"))(x)
            return nn.Dense(3, name="linear")(y)

    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 4)), jnp.float32)
    ref = Reference()
    variables = jax.jit(ref.init)(jax.random.key(0), x)
    ours = BidirectionalLSTM(hidden=5, out_features=3)
    assert jax.tree_util.tree_structure(jax.eval_shape(ours.init, jax.random.key(0), x)) == \
        jax.tree_util.tree_structure(variables)
    np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), atol=1e-6)

    def grads(model):
        return jax.grad(lambda v, x: jnp.sum(jnp.sin(model.apply(v, x))), (0, 1))(variables, x)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
                           grads(ours), grads(ref))


def test_lstm_recurrence_backward_equals_autodiff_in_float64():
    """The hand-written backward of ``sequence.recurrence`` (kernel gradient after the loop)
    is autodiff's of the same scan to float64 rounding, for both inputs."""
    from grcnn_jax.models import sequence

    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        wh = jnp.asarray(rng.normal(size=(2, 5, 20)) * 0.5)
        xw = jnp.asarray(rng.normal(size=(7, 2, 3, 20)))

        def loss(recurrence):
            return jax.jit(jax.grad(lambda wh, xw: jnp.sum(jnp.sin(3 * recurrence(wh, xw))),
                                    (0, 1)))(wh, xw)
        ours = loss(sequence.recurrence)
        autodiff = loss(lambda wh, xw: sequence._run(wh, xw)[0])
        assert ours[0].dtype == jnp.float64
        for a, b in zip(ours, autodiff):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
            assert np.abs(b).max() > 0.1


def test_lstm_inference_scan_equals_the_training_one():
    """``recurrence`` undifferentiated (inference: h only, unrolled) gives the hidden states
    of the scan its backward pass is built on."""
    from grcnn_jax.models import sequence

    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        wh = jnp.asarray(rng.normal(size=(2, 5, 20)) * 0.5)
        for frames in (1, 7, 40):          # 40: more frames than one unrolled trip
            xw = jnp.asarray(rng.normal(size=(frames, 2, 3, 20)))
            np.testing.assert_allclose(jax.jit(sequence.recurrence)(wh, xw),
                                       jax.jit(sequence._run)(wh, xw)[0], rtol=0, atol=1e-13)


def test_unknown_model_field_is_reported():
    cfg = load_config("grcl").model
    cfg.unlock()
    cfg.heads = 3
    with pytest.raises(ValueError, match="heads"):
        create_model(cfg, NUM_CLASSES)
    cfg = load_config("grcl").model
    cfg.dtype = "float8"
    with pytest.raises(ValueError, match="float8"):
        create_model(cfg, NUM_CLASSES)


def test_config_becomes_one_options_object():
    """create_model builds the GRCL settings once (dtype from its name); the rest are
    GRCNN fields; the options are frozen and hashable (Flax hashes module attributes)."""
    cfg = load_config("grcl").model
    cfg.T, cfg.share, cfg.dtype, cfg.remat, cfg.hidden = 3, False, "bfloat16", "full", 64
    model = create_model(cfg, NUM_CLASSES)
    assert model.options == GRCLOptions(T=3, share=False, dtype=jnp.bfloat16, remat="full")
    assert model.hidden == 64 and model.grcl_features == (64, 128, 256)
    assert model.backbone().options is model.options
    assert hash(model.options) == hash(GRCLOptions(T=3, share=False, dtype=jnp.bfloat16,
                                                   remat="full"))
    with pytest.raises(AttributeError):
        model.options.T = 4
    assert create_model({}, NUM_CLASSES).options == GRCLOptions()


@pytest.mark.parametrize("field,value", [("T", -1), ("T", 1.5), ("scan_unroll", -2),
                                         ("remat", "some"), ("conv_impl", "fft")])
def test_bad_options_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"GRCLOptions.{field}="):
        GRCLOptions(**{field: value})
    with pytest.raises(ValueError, match=f"GRCLOptions.{field}="):
        create_model({field: value}, NUM_CLASSES)


def test_analytic_flops_match_the_torch_peers_count():
    """shared/bench/torch_grcnn.py's independent analytic counts (its `flops` command)."""
    from grcnn_jax.models.flops import forward_flops

    config = load_config("grcl")
    assert forward_flops(config.model, 37) == 1_712_539_648
    config.model.T, config.model.hidden = 3, 512
    assert forward_flops(config.model, 37) == 1_465_012_224
