"""The seed's pretrain recipe exactly (model/GRCL/GRCL_LSTM_pretrain.lua of the authors' Torch
code): GRCL with T = 5 and untied recurrent weights (one set per iteration), BLSTM 512,
ADADELTA with Torch's optim.adadelta defaults (lr 1, rho 0.9, eps 1e-6; the seed passes an
empty optimConfig), no gradient clipping, batch 192, 300k iterations, 32x100, 36 classes.

    python -m grcnn_jax.main --config configs/grcl_seed.py --workdir runs/seed
"""

from grcnn_jax.config.defaults import get_base_config


def get_config():
    config = get_base_config()
    config.model.T = 5
    config.model.share = False          # GRCL(..., share=false) in the seed
    config.model.hidden = 512           # bidirectionalLSTM(512, 512, ...)
    config.optimizer.name = "adadelta"
    config.optimizer.learning_rate = 1.0
    config.optimizer.rho = 0.9          # optim.adadelta's defaults
    config.optimizer.eps = 1e-6
    config.grad_clip_norm = 0.0         # the seed does not clip
    config.batch_size = 192
    config.num_train_steps = 300_000
    return config
