"""The paper's GRCNN (Wang & Hu, NIPS 2017) with DTRB's training settings.

Model: GRCL with T = 5 and recurrent weights shared across iterations, widths
64/64/128/256/512, BLSTM 256 (DTRB's, clovaai/deep-text-recognition-benchmark). Training:
ADADELTA lr 1 with DTRB's rho 0.95, eps 1e-8 and gradient clipping at norm 5, batch 192,
300k steps. The seed's own recipe (untied weights, BLSTM 512, Torch's ADADELTA defaults,
no clipping) is configs/grcl_seed.py.

    python -m grcnn_jax.main --config configs/grcl.py --config.model.T=3
"""

from grcnn_jax.config.defaults import get_base_config


def get_config():
    return get_base_config()
