"""The model we ship: the best real-word reader we could train on 2 CPU cores in ~100 minutes.

    python -m grcnn_jax.main --config configs/reader.py --workdir runs/reader \
        --config.data.val=synth,PATH/TO/REAL/WORDS     # optional: log accuracy on real words

The paper's GRCNN narrowed to widths 48/48/96/160/256, T = 2, BLSTM 128 (the quickstart's
32/32/64/96/128 and BLSTM 96, widened: 1.6x its compute per image, 125 vs 200 training
images/s on the 2-core machine); 36 characters, case-insensitive, the standard protocol;
trained on the synthetic generator alone (nothing downloaded), Adam 2e-3 with 300 warmup
steps and a cosine decay over 22,000 steps of batch 32, images through the
principal-colour-axis grayscale (``data.grayscale``).

The shipped weights (grcnn_jax/assets/reader) are this run, in two legs on one schedule:
steps 0-9,402 with the generator's crops a quarter tight, then (stopped by SIGTERM,
resumed from its checkpoint) steps 9,402-22,000 with half of them tight, after its errors
on real crops showed first and last letters dropped where they touch the crop's edge.
Run today, the config trains on the second generator throughout. Its measured accuracy
on real words and its training curve are in docs/accuracy.md.
"""

from grcnn_jax.config.recipes import reader


def get_config():
    return reader()
