"""The shipped reader's recipe with real words: case, punctuation, real training crops.

    python launch/split_real_train.py ../shared/real_train/labels.tsv runs/data
    grcnn-make-lmdb --labels runs/data/train.tsv runs/data/real_train.lmdb
    grcnn-make-lmdb --labels runs/data/val.tsv runs/data/real_val.lmdb
    python -m grcnn_jax.main --config configs/reader_real.py --workdir runs/reader_real

``configs/reader.py``'s network with PARSeq's 94 characters (digits, both cases, the 32
ASCII punctuation marks), fine-tuned from the shipped weights (``init_from``: the classifier
keeps the columns of the characters both charsets have; the new ones start below them) on
half synthetic words (now with case and punctuation, as the charset asks) and half real
crops (``runs/data/real_train.lmdb``: the training splits of IIIT5K, SVT and ICDAR 2015
less the 10% held out as ``real_val``), every training image augmented (angle, shear,
perspective, curve, crop, blur, contrast, polarity, noise: ``data.preprocess.augment``).
Labels holding a space are skipped (the charset has none).
"""

from grcnn_jax.config.defaults import CASED_CHARSET, load_config_file
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_config():
    config = load_config_file(os.path.join(_HERE, "reader.py"))
    config.charset = CASED_CHARSET
    config.init_from = "pretrained"
    d = config.data
    d.train = "synth,runs/data/real_train.lmdb"
    d.train_weights = "0.5,0.5"
    d.augment = True
    d.val = "runs/data/real_val.lmdb,../shared/ic03_dev"
    o = config.optimizer
    o.learning_rate = 1e-3
    o.warmup_steps = 500
    config.num_train_steps = 15_000
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    return config
