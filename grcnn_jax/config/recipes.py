"""The recipes that build on each other: quickstart -> reader -> reader_real.

``configs/quickstart.py``, ``configs/reader.py`` and ``configs/reader_real.py`` are these
functions (their docstrings say what each run gives); a config that starts from one of them
imports it from here instead of loading another config file by path.
"""

import ml_collections

from grcnn_jax.config.defaults import CASED_CHARSET, get_base_config


def quickstart() -> ml_collections.ConfigDict:
    """A small GRCNN for the synthetic words on a 2-core CPU: T = 2, widths 32/32/64/96/128,
    BLSTM 96, Adam 2e-3 with 200 warmup steps and a cosine decay over 4,800 steps of 32."""
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
    config.num_train_steps = 4_800
    config.log_every = 50
    config.eval_every = 600
    config.checkpoint_every = 600
    config.data.synth_val_size = 500
    config.data.num_workers = 1
    return config


def reader() -> ml_collections.ConfigDict:
    """The quickstart widened to 48/48/96/160/256 and BLSTM 128, 22,000 steps, 300 warmup
    steps: the synthetic-only reader (36 characters)."""
    config = quickstart()
    m = config.model
    m.conv0_features = 48
    m.grcl_features = (48, 96, 160)
    m.out_features = 256
    m.hidden = 128
    config.num_train_steps = 22_000
    config.optimizer.warmup_steps = 300
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    return config


def reader_real() -> ml_collections.ConfigDict:
    """``reader``'s network with 94 characters, fine-tuned from the shipped weights on half
    synthetic, half real crops (``runs/data/real_train.lmdb``), every image augmented; the
    generator paints half its words in colours measured on the real training crops
    (``runs/data/palettes.npy``) and writes a few in LED dots or in relief."""
    config = reader()
    config.charset = CASED_CHARSET
    config.init_from = "pretrained"
    d = config.data
    d.train = "synth,runs/data/real_train.lmdb"
    d.train_weights = "0.5,0.5"
    d.synth_palettes = "runs/data/palettes.npy"
    d.synth_styles = "dots,relief"
    d.augment = True
    d.val = "runs/data/real_val.lmdb,../shared/ic03_dev"
    o = config.optimizer
    o.learning_rate = 1e-3
    o.warmup_steps = 500
    config.num_train_steps = 15_000
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    return config
