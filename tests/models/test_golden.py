"""The model reproduces the independent float64 reference outputs in ../shared/golden."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grcnn_jax.models import GRCL, Backbone, GRCLOptions
from grcnn_jax.models.convert import variables_from_flat

GATE_NAMES = ("wgf", "wgr", "bn_gfu", "bn_grx", "bn_gx")


def assert_close(out, ref):
    out, ref = np.asarray(out, np.float64), np.asarray(ref)
    assert out.shape == ref.shape
    err = np.abs(out - ref).max() / np.abs(ref).max()
    assert err <= 1e-4, f"max abs error {err:.2e} x max|reference|"


def apply(module, variables, x, train):
    if train:
        out, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
        return out
    return module.apply(variables, x, train=False)


def golden_options(golden, **kw) -> GRCLOptions:
    return GRCLOptions(T=int(golden["T"]), bn_epsilon=float(golden["bn_eps"]), **kw)


def grcl_module(golden, **kw):
    return GRCL(features=golden["grcl/wf"].shape[-1], options=golden_options(golden, **kw))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_grcl(golden, train):
    variables = variables_from_flat(golden, "grcl/")
    model = grcl_module(golden)
    x = jnp.asarray(golden["grcl_input"], jnp.float32)
    # The mapped tree is exactly the tree the module creates: nothing missing, nothing extra.
    init = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(variables)
    ref = golden["grcl_train_output" if train else "grcl_eval_output"]
    assert_close(apply(model, variables, x, train), ref)


def test_rcl(golden):
    flat = {k: v for k, v in golden.items() if not any(f"/{g}" in k for g in GATE_NAMES)}
    variables = variables_from_flat(flat, "grcl/")
    model = grcl_module(golden, gated=False)
    x = jnp.asarray(golden["grcl_input"], jnp.float32)
    assert_close(apply(model, variables, x, False), golden["rcl_eval_output"])


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_grcl_untied_with_equal_weights(golden, train):
    """share=False with every iteration's kernels set to the shared ones gives the same output."""
    T = int(golden["T"])
    flat = {k: v for k, v in golden.items() if k not in ("grcl/wr", "grcl/wgr")}
    for name in ("wr", "wgr"):
        for t in range(T):
            flat[f"grcl/{name}/{t}"] = golden[f"grcl/{name}"]
    variables = variables_from_flat(flat, "grcl/")
    assert variables["params"]["iterations"]["wr"].shape == (T, 3, 3, 16, 16)
    model = grcl_module(golden, share=False)
    x = jnp.asarray(golden["grcl_input"], jnp.float32)
    ref = golden["grcl_train_output" if train else "grcl_eval_output"]
    assert_close(apply(model, variables, x, train), ref)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_backbone(golden, train):
    variables = variables_from_flat(golden, "backbone/")
    widths = [golden["backbone/conv0/kernel"].shape[-1]] + [
        golden[f"backbone/grcl{i}/wf"].shape[-1] for i in (1, 2, 3)]
    model = Backbone(conv0_features=widths[0], grcl_features=tuple(widths[1:]),
                     out_features=golden["backbone/conv4/kernel"].shape[-1],
                     options=golden_options(golden))
    x = jnp.asarray(golden["backbone_input"], jnp.float32)
    init = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(variables)
    ref = golden["backbone_train_output" if train else "backbone_eval_output"]
    assert_close(apply(model, variables, x, train), ref)


def test_train_mode_updates_running_stats(golden):
    """In training the running statistics move toward the batch's, each iteration its own."""
    variables = variables_from_flat(golden, "grcl/")
    model = grcl_module(golden)
    x = jnp.asarray(golden["grcl_input"], jnp.float32)
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    old = variables["batch_stats"]["iterations"]["bn_fu"]["mean"]
    new = np.asarray(updates["batch_stats"]["iterations"]["bn_fu"]["mean"])
    wf_u = jax.lax.conv_general_dilated(x, golden["grcl/wf"].astype(np.float32), (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    batch_mean = np.asarray(wf_u).mean(axis=(0, 1, 2))
    # bn_fu normalizes wf*u, the same input in every iteration: mean' = 0.9 mean + 0.1 batch mean.
    np.testing.assert_allclose(new, 0.9 * old + 0.1 * batch_mean[None], rtol=1e-5, atol=1e-6)


def test_variables_from_flat_rejects_gaps():
    with pytest.raises(ValueError, match=r"iterations/bn_fu/scale are \[0, 2\]"):
        variables_from_flat({"g/bn_fu/0/scale": np.ones(2), "g/bn_fu/2/scale": np.ones(2)}, "g/")
