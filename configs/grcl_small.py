"""The seed's small GRCNN: T = 3, recurrent weights shared across iterations, BLSTM 512."""

from grcnn_jax.config_base import get_base_config


def get_config():
    config = get_base_config()
    config.model.T = 3
    config.model.share = True
    config.model.hidden = 512        # the seed's BLSTM size
    return config
