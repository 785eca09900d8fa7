"""Ablation: the ungated recurrent convolution layer (RCL), otherwise the paper's model."""

from grcnn_jax.config.defaults import get_base_config


def get_config():
    config = get_base_config()
    config.model.gated = False
    return config
