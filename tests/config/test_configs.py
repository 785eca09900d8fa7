"""Every config file loads, and its model builds with the expected output shape."""

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO, load_config
from grcnn_jax.text.charset import Charset
from grcnn_jax.models import create_model

CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py"))


def test_the_expected_configs_exist():
    assert {"grcl", "grcl_small", "rcl", "cnn"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model(name):
    config = load_config(name)
    charset = Charset.from_spec(config.charset)
    model = create_model(config.model, charset.num_classes)
    images = jnp.zeros((2, config.image_height, config.image_width), jnp.uint8)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, images)
    assert logits.shape == (2, 26, charset.num_classes)


def _backbone_size(config):
    model = create_model(config.model, 37)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 100), jnp.uint8))
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(variables["params"]["backbone"]))


def test_the_seed_recipe_unties_the_recurrent_convolutions():
    """configs/grcl_seed.py: one 3x3 (wr) and one 1x1 (wgr) C x C recurrent kernel per
    iteration instead of one shared pair: (T - 1) * 10 C^2 more weights per GRCL."""
    paper, seed = load_config("grcl"), load_config("grcl_seed")
    extra = (seed.model.T - 1) * sum(10 * c * c for c in seed.model.grcl_features)
    assert _backbone_size(seed) - _backbone_size(paper) == extra == 3_440_640


def test_the_seed_recipe_is_torchs_adadelta_without_clipping():
    """One update from zero state with a large gradient: Torch's optim.adadelta defaults
    (rho 0.9, eps 1e-6, lr 1) on the unclipped gradient; the paper config clips it at 5."""
    import numpy as np

    from grcnn_jax.training.setup import optimizer_of

    g = {"w": jnp.array([100.0, -0.5, 3.0])}
    params = {"w": jnp.zeros(3)}

    def update(name):
        tx = optimizer_of(load_config(name))
        return np.asarray(tx.update(g, tx.init(params), params)[0]["w"])

    v = 0.1 * np.asarray(g["w"]) ** 2                       # rho * 0 + (1 - rho) g^2
    torch_step = -np.sqrt(1e-6) / np.sqrt(v + 1e-6) * np.asarray(g["w"])
    np.testing.assert_allclose(update("grcl_seed"), torch_step, rtol=1e-5)
    assert not np.allclose(update("grcl"), torch_step, rtol=1e-2)
