"""Turns the tall training crops whose word is written upwards or downwards upright.

    python launch/orient_tall_crops.py runs/data/train.tsv runs/data/oriented [--checkpoint pretrained]
    grcnn-make-lmdb --labels runs/data/oriented/train.tsv runs/data/real_train_oriented.lmdb

A crop at least ``preprocess.TURN_RATIO`` times as tall as wide is scored as it is and
turned a quarter each way (``preprocess.turned_views``) by a reader (default the shipped
one): the CTC log-likelihood of *its label* under each view. Where a turned view explains
the label best, the crop is written turned (the whole image, at its own resolution, PNG) to
``OUT/images/`` and the new label file points at it; every other line is copied as it is.
Readers read tall crops turned too, so a model trained on the upright copies learns from
those words instead of from sideways pictures of them. Labels are case-folded and reduced to
the reader's charset only to be scored; the label file keeps them as they were.

Prints how many crops were tall and how many were turned each way.
"""

import argparse
import collections
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", help="the label file: path<TAB>text per line (absolute "
                        "paths, as launch/split_real_train.py writes them)")
    parser.add_argument("out", help="folder for train.tsv and images/")
    parser.add_argument("--checkpoint", default="pretrained", help="the reader that scores "
                        "the views (as grcnn-evaluate --checkpoint)")
    args = parser.parse_args()

    import jax
    import numpy as np
    from PIL import Image

    from grcnn_jax.config.defaults import gray_mode
    from grcnn_jax.data.images import pil_to_grayscale, upright
    from grcnn_jax.data.preprocess import TURNS, adapt_label, resize, turned_views
    from grcnn_jax.inference.load import load_for_inference
    from grcnn_jax.models import create_model
    from grcnn_jax.text.ctc_host import ctc_log_likelihood, log_softmax

    ckpt = load_for_inference(checkpoint=args.checkpoint)
    c, charset = ckpt.config, ckpt.charset
    model = create_model(c.model, charset.num_classes)
    variables = {"params": ckpt.params, "batch_stats": ckpt.batch_stats}
    logits = jax.jit(lambda x: model.apply(variables, x, train=False))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    try:
        with open(args.labels, encoding="utf-8") as f:
            lines = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    except OSError as e:
        print(f"FATAL cannot read {args.labels!r}: {e}", file=sys.stderr)
        return 1
    counts = collections.Counter()
    out = []
    for number, parts in enumerate(lines, 1):
        if len(parts) != 2:
            print(f"FATAL {args.labels}:{number}: expected path<TAB>text", file=sys.stderr)
            return 1
        path, text = parts
        with Image.open(path) as im:
            im = upright(im)
            im.load()
        gray = pil_to_grayscale(im, gray_mode(c))
        views = turned_views(gray, c.image_height, c.image_width, c.data.keep_aspect)
        ids = charset.encode(adapt_label(text, charset, keep_case=True))
        if views is None or not ids:
            out.append((path, text))
            continue
        counts["tall"] += 1
        images = np.concatenate([resize(gray, c.image_height, c.image_width,
                                        c.data.keep_aspect)[None], views])
        log_probs = log_softmax(np.asarray(logits(images)))
        best = int(np.argmax([ctc_log_likelihood(lp, ids) for lp in log_probs]))
        if best == 0:
            out.append((path, text))
            continue
        counts[TURNS[best - 1]] += 1
        name = os.path.splitext(os.path.basename(os.path.dirname(path)) + "_"
                                + os.path.basename(path))[0] + ".png"
        turned = os.path.abspath(os.path.join(args.out, "images", name))
        # A quarter clockwise is PIL's ROTATE_270 (PIL turns anticlockwise).
        im.transpose(Image.Transpose.ROTATE_270 if best == 1 else Image.Transpose.ROTATE_90
                     ).save(turned)
        out.append((turned, text))
    with open(os.path.join(args.out, "train.tsv"), "w", encoding="utf-8") as f:
        f.writelines(f"{p}\t{t}\n" for p, t in out)
    print(f"{len(out)} lines; {counts['tall']} tall crops scored, turned clockwise "
          f"{counts['clockwise']}, anticlockwise {counts['anticlockwise']}; wrote "
          f"{os.path.join(args.out, 'train.tsv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
