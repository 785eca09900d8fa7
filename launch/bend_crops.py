"""Writes a curved copy of a word-crop folder: every crop bent along a circular arc.

    python launch/bend_crops.py runs/data/real_val runs/data/real_val_bent [--min 0.8 --max 2.0]
    python -m benchmarks.peer_accuracy --data runs/data/real_val_bent

A stand-in for curved text (round signs, logos, bottles: CUTE80's kind), which no set here
holds: each crop of an ICDAR-03-style folder (``test.txt``, ``test_label.txt``) is bent by
``preprocess.bend_arc`` through an angle drawn from ``--seed``, its size uniform in
[``--min``, ``--max``] radians (never more than twice the crop's width over its height, so
that the arc's inner edge stays a circle), the circle below and above the word in turn. The
crops are written as PNG at their own resolution beside a new ``test.txt`` and the same
labels (and ``lexicon_50.txt`` if the folder has one). Measure on the copy of a set kept
apart from training, never train on it.
"""

import argparse
import os
import shutil
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="an ICDAR-03-style folder (test.txt, test_label.txt)")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--min", type=float, default=0.8, help="smallest arc, radians")
    parser.add_argument("--max", type=float, default=2.0, help="largest arc, radians")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 < args.min <= args.max:
        print(f"FATAL --min {args.min} and --max {args.max}: need 0 < min <= max",
              file=sys.stderr)
        return 1

    import numpy as np
    from PIL import Image

    from grcnn_jax.data.errors import DataError
    from grcnn_jax.data.formats.folders import IMAGES_FILE, LABELS_FILE, LEXICON_FILE, Icdar03Folder
    from grcnn_jax.data.images import upright
    from grcnn_jax.data.preprocess import bend_arc

    try:
        folder = Icdar03Folder(args.folder)
    except DataError as e:
        print(f"FATAL {e}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    paths, angles = [], []
    for i, path in enumerate(folder.files):
        try:
            with Image.open(path) as im:
                a = np.asarray(upright(im).convert("RGB"))
        except OSError as e:
            print(f"FATAL {path}: {e}", file=sys.stderr)
            return 1
        h, w = a.shape[:2]
        angle = min(float(rng.uniform(args.min, args.max)), 2 * w / h) * (1 if i % 2 else -1)
        out = os.path.abspath(os.path.join(args.out, "images", f"{i:05d}.png"))
        Image.fromarray(bend_arc(a, angle)).save(out)
        paths.append(out)
        angles.append(abs(angle))
    with open(os.path.join(args.out, IMAGES_FILE), "w", encoding="utf-8") as f:
        f.writelines(p + "\n" for p in paths)
    shutil.copyfile(os.path.join(args.folder, LABELS_FILE), os.path.join(args.out, LABELS_FILE))
    if folder.lexicons is not None:
        shutil.copyfile(os.path.join(args.folder, LEXICON_FILE),
                        os.path.join(args.out, LEXICON_FILE))
    print(f"wrote {len(paths)} bent crops to {args.out} (arcs {min(angles):.2f}-"
          f"{max(angles):.2f} rad, median {float(np.median(angles)):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
