"""The data layer: random-access sources -> decode/resize/encode in workers -> padded batches.

Every source is random-access (``len(source)``, ``source[i]``) and returns a
record dict::

    {"key": str,                 # where it came from, for error reports ('image-000000042', a path, ...)
     "image": bytes | np.ndarray, # encoded image bytes (any format Pillow reads), or uint8 [H, W] / [H, W, 3]
     "text": str,                # the transcription as stored (case and characters untouched)
     "lexicon": list[str]}       # optional: the image's lexicon words

Shuffling, sharding over hosts and exact resumption are index arithmetic on top.
"""
