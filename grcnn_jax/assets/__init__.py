"""Where the package's shipped files are; importing this imports nothing else.

``READER_DIR``: the shipped reader's weights (``grcnn_jax.inference.pretrained`` reads and writes it).
``READER_ONNX_DIR``: the same reader as an ONNX model (``grcnn_jax.inference.onnx_reader``), written by
``python -m grcnn_jax.export --format onnx --out grcnn_jax/assets/reader_onnx``; ``recognize``
runs it with onnxruntime when it can, which starts in a fraction of a second where jax takes
seconds.
"""

import os

PRETRAINED = "pretrained"      # the word that selects the shipped reader: --checkpoint, init_from
_HERE = os.path.dirname(os.path.abspath(__file__))
READER_DIR = os.path.join(_HERE, "reader")
READER_ONNX_DIR = os.path.join(_HERE, "reader_onnx")
