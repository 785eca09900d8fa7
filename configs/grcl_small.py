"""A smaller GRCNN: T = 3 (recurrent weights shared), BLSTM 512; otherwise configs/grcl.py."""

from grcnn_jax.config.defaults import get_base_config


def get_config():
    config = get_base_config()
    config.model.T = 3
    config.model.hidden = 512
    return config
