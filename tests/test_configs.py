"""Every config file loads, and its model builds with the expected output shape."""

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO, load_config
from grcnn_jax.charset import Charset
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


def test_paper_and_small_configs():
    paper, small = load_config("grcl"), load_config("grcl_small")
    assert (paper.model.T, paper.model.share, paper.model.gated) == (5, True, True)
    assert (small.model.T, small.model.share) == (3, True)
    assert load_config("rcl").model.gated is False
    assert load_config("cnn").model.T == 0
