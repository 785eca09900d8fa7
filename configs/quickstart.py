"""A small GRCNN that learns to read the synthetic words on a 2-core CPU in minutes.

    python -m grcnn_jax.main --config configs/quickstart.py --workdir /tmp/grcnn_quickstart

Same architecture as the paper (GRCL with shared recurrent convs, two BLSTMs,
CTC), narrower and with T = 2, trained with Adam instead of ADADELTA because
it gets far in few steps.

Measured on a 2-core CPU VM: 115 images/s, 2,700 steps in 13.1 minutes, validation word
accuracy 0.0 / 20.6 / 49.8 / 64.0 / 63.8% at steps 300 / 900 / 1,500 / 2,100 / 2,700
(500 synthetic words, lexicon-free).
"""

from grcnn_jax.config_base import get_base_config


def get_config():
    config = get_base_config()
    m = config.model
    m.T = 2
    m.conv0_features = 32
    m.grcl_features = (32, 64, 96)
    m.out_features = 128
    m.hidden = 96
    o = config.optimizer
    o.name = "adam"
    o.learning_rate = 2e-3
    o.schedule = "cosine"
    o.warmup_steps = 200
    config.batch_size = 32
    config.eval_batch_size = 100
    config.num_train_steps = 4_800    # ~13 min at ~200 images/s on 2 CPU cores
    config.log_every = 50
    config.eval_every = 600
    config.checkpoint_every = 600
    config.data.synth_val_size = 500
    config.data.num_workers = 1
    return config
