"""The shipped reader's recipe with real words: case, punctuation, real training crops.

    python launch/split_real_train.py ../shared/real_train/labels.tsv runs/data
    grcnn-make-lmdb --labels runs/data/train.tsv runs/data/real_train.lmdb
    grcnn-make-lmdb --labels runs/data/val.tsv runs/data/real_val.lmdb
    grcnn-synth --palettes_from runs/data/real_train.lmdb --palettes runs/data/palettes.npy
    python -m grcnn_jax.main --config configs/reader_real.py --workdir runs/reader_real

``configs/reader.py``'s network with PARSeq's 94 characters (digits, both cases, the 32
ASCII punctuation marks), fine-tuned from the shipped weights (``init_from``: the classifier
keeps the columns of the characters both charsets have; the new ones start below them) on
half synthetic words (now with case and punctuation, as the charset asks; half of them
painted in text and background colours measured on the real training crops, a few in LED
dots or in relief: ``data.synth_styles``) and half real
crops (``runs/data/real_train.lmdb``: the training splits of IIIT5K, SVT and ICDAR 2015
less the 10% held out as ``real_val``), every training image augmented (arc, angle,
shear, perspective, curve, crop, blur, contrast, polarity, noise: ``data.preprocess.augment``).
Labels holding a space are skipped (the charset has none).
"""

from grcnn_jax.config.recipes import reader_real


def get_config():
    return reader_real()
