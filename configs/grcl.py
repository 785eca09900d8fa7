"""The paper's GRCNN (Wang & Hu, NIPS 2017): GRCL, T = 5, shared recurrent weights.

    python -m grcnn_jax.main --config configs/grcl.py --config.model.T=3
"""

from grcnn_jax.config_base import get_base_config


def get_config():
    return get_base_config()
