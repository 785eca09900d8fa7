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

``--oblique``, ``--tilt`` and ``--margin`` make a second stand-in, one that no exact inverse of
the arc undoes: a round sign seen at an angle (the bent crop's width or height scaled by up to
``--oblique`` times, a circle's arc seen as an ellipse's), turned by up to ``--tilt`` degrees
either way, framed with up to ``--margin`` of its height and width added on each side (its
border's colour). They are drawn from a generator of their own, so the arcs are those of the
plain copy with the same ``--seed``.
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
    parser.add_argument("--oblique", type=float, default=1.0,
                        help="scale the bent crop's width or height by up to this factor (>= 1)")
    parser.add_argument("--tilt", type=float, default=0.0, help="turn by up to this, degrees")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="add up to this share of the size on each side (0-0.5)")
    args = parser.parse_args()
    if not 0 < args.min <= args.max:
        print(f"FATAL --min {args.min} and --max {args.max}: need 0 < min <= max",
              file=sys.stderr)
        return 1
    if args.oblique < 1 or not 0 <= args.tilt <= 45 or not 0 <= args.margin <= 0.5:
        print(f"FATAL need --oblique >= 1 (got {args.oblique}), --tilt in [0, 45] (got "
              f"{args.tilt}), --margin in [0, 0.5] (got {args.margin})", file=sys.stderr)
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
    extra = np.random.default_rng([args.seed, 1])

    def seen_otherwise(bent: np.ndarray) -> np.ndarray:
        """The bent crop seen at an angle, turned and framed (``--oblique/--tilt/--margin``)."""
        h, w = bent.shape[:2]
        fill = tuple(int(c) for c in np.median(
            np.concatenate([bent[0], bent[-1], bent[:, 0], bent[:, -1]]), axis=0))
        image = Image.fromarray(bent)
        if args.oblique > 1:
            factor = float(np.exp(extra.uniform(0, np.log(args.oblique))))
            size = (round(w * factor), h) if extra.random() < 0.5 else (w, round(h * factor))
            image = image.resize(size, Image.BILINEAR)
        if args.tilt > 0:
            image = image.rotate(float(extra.uniform(-args.tilt, args.tilt)), Image.BILINEAR,
                                 expand=True, fillcolor=fill)
        out = np.asarray(image)
        if args.margin > 0:
            h, w = out.shape[:2]
            (top, bottom), (left, right) = (
                [round(extra.uniform(0, args.margin) * size) for _ in range(2)]
                for size in (h, w))
            out = np.stack([np.pad(out[..., c], ((top, bottom), (left, right)),
                                   constant_values=fill[c]) for c in range(out.shape[2])], -1)
        return out

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
        bent = bend_arc(a, angle)
        if args.oblique > 1 or args.tilt > 0 or args.margin > 0:
            bent = seen_otherwise(bent)
        Image.fromarray(bent).save(out)
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
