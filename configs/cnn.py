"""Ablation: the plain feed-forward CNN (T = 0: each GRCL is conv + BN + ReLU)."""

from grcnn_jax.config.defaults import get_base_config


def get_config():
    config = get_base_config()
    config.model.T = 0
    return config
