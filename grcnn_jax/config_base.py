"""Defaults that every file in configs/ starts from; each file changes what it needs.

Config files are ml_collections ``get_config()`` files (configs/grcl.py is the
paper). Any field can be overridden on the command line, e.g.
``--config.model.T=3 --config.model.dtype=bfloat16``.
"""

import ml_collections

PAPER_CHARSET = "0123456789abcdefghijklmnopqrstuvwxyz"


def get_model_config() -> ml_collections.ConfigDict:
    """The paper's model: GRCL with T = 5, shared recurrent convs, widths 64/64/128/256/512."""
    m = ml_collections.ConfigDict()
    m.T = 5                          # recurrent iterations per GRCL (0: the plain-CNN ablation)
    m.gated = True                   # False: the ungated RCL ablation
    m.share = True                   # recurrent convs shared over iterations (False: one set each)
    m.conv0_features = 64
    m.grcl_features = (64, 128, 256)
    m.out_features = 512             # conv4 width, and the first BLSTM's linear map
    m.hidden = 256                   # LSTM units per direction (the seed: 512; clovaai: 256)
    m.dtype = "float32"              # compute dtype: float32 | bfloat16 (params stay float32)
    m.bn_momentum = 0.9              # Flax convention: keep 0.9 of the old statistic (PyTorch 0.1)
    m.bn_epsilon = 1e-5
    m.scan_unroll = 1                # GRCL iterations per while-loop trip (T: fully unrolled)
    m.remat = False                  # recompute GRCL iterations in the backward pass
    return m


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.charset = PAPER_CHARSET   # the characters in id order (blank = 0); 'file:PATH' reads one
    config.image_height = 32
    config.image_width = 100
    config.model = get_model_config()
    return config
