"""A small GRCNN that learns to read the synthetic words on a 2-core CPU in minutes.

    python -m grcnn_jax.main --config configs/quickstart.py --workdir /tmp/grcnn_quickstart

Same architecture as the paper (GRCL with shared recurrent convs, two BLSTMs,
CTC), narrower and with T = 2, trained with Adam instead of ADADELTA because
it gets far in few steps.

Measured on the 2-core CPU machine: 182 training images/s, 4,800 steps in 13.9 minutes,
synthetic validation word accuracy 0.6 / 44.4 / 57.6 / 64.2 / 65.4% at steps 600 / 1,800 /
3,000 / 4,200 / 4,800 (500 words, lexicon-free); on 430 real ICDAR 2003 crops
(``--config.data.val=synth,../shared/ic03_dev``) 68.4% lexicon-free, 96.3% with lexicons.
"""

from grcnn_jax.config.recipes import quickstart


def get_config():
    return quickstart()
