"""The model we ship: the best real-word reader a 2-core CPU trains in about 100 minutes.

    python -m grcnn_jax.main --config configs/reader.py --workdir runs/reader

The paper's GRCNN narrowed to widths 48/48/96/160/256, T = 2, BLSTM 128 (the quickstart's
32/32/64/96/128 and BLSTM 96, widened: 1.6x its compute per image); 36 characters,
case-insensitive, the standard protocol; trained on the synthetic generator alone,
Adam with a cosine schedule, batch 32. Images reach
the network through the principal-colour-axis grayscale (``data.grayscale``), which keeps
hue contrast that luminance loses. Its figures on real words are in README.md.
"""

import importlib.util
import os


def _quickstart():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py")
    spec = importlib.util.spec_from_file_location("grcnn_configs_quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config():
    config = _quickstart().get_config()
    m = config.model
    m.conv0_features = 48
    m.grcl_features = (48, 96, 160)
    m.out_features = 256
    m.hidden = 128
    config.num_train_steps = 22_000   # ~95 min at ~125 images/s on 2 CPU cores
    config.optimizer.warmup_steps = 300
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    return config
