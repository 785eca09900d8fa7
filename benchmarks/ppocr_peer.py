"""PP-OCRv4's recognizer (RapidOCR) on a list of word images; run by the peer's Python.

    .venv-peer/bin/python benchmarks/ppocr_peer.py files.json

The same contract as ``easyocr_peer.py``: ``files.json`` is a JSON list of image paths;
each image is read whole as one word (recognition only: no detection, no angle
classifier), one image at a time, its text as the model writes it (case and punctuation
kept). Prints one JSON line: {"texts": [...], "seconds": recognition time of all images,
"per_image": each image's seconds (read and recognized), "version", "model"}. Standalone:
it imports rapidocr_onnxruntime, numpy, Pillow and the standard library only; the weights
are inside the ``rapidocr-onnxruntime`` wheel.
"""

import json
import sys
import time


def main() -> int:
    from importlib.metadata import version

    import numpy as np
    from PIL import Image
    from rapidocr_onnxruntime import RapidOCR

    with open(sys.argv[1]) as f:
        files = json.load(f)
    ocr = RapidOCR()
    texts, per_image = [], []
    start = time.perf_counter()
    for path in files:
        t = time.perf_counter()
        bgr = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1])
        result, _ = ocr(bgr, use_det=False, use_cls=False, use_rec=True)
        texts.append("".join(r[0] for r in result or []))
        per_image.append(time.perf_counter() - t)
    seconds = time.perf_counter() - start
    print(json.dumps({"texts": texts, "seconds": seconds, "per_image": per_image,
                      "version": version("rapidocr-onnxruntime"), "model": "PP-OCRv4 rec"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
