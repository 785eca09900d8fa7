"""Splits a ``path<TAB>text`` label file into a training part and a held-out validation part.

    python launch/split_real_train.py ../shared/real_train/labels.tsv runs/data [--holdout 0.1]
    grcnn-make-lmdb --labels runs/data/train.tsv runs/data/real_train.lmdb
    grcnn-make-lmdb --labels runs/data/val.tsv runs/data/real_val.lmdb

The held-out part is also written as an ICDAR-03-style folder, ``OUT/real_val/``
(``test.txt``, ``test_label.txt``): its records keep their image paths as keys, so that
``benchmarks/peer_accuracy.py --data runs/data/real_val`` can tell the sources apart.

A line is held out when the SHA-1 of its image path, as a number, falls in the first
``holdout`` of the range: a pure function of the path, so the split is the same on every
machine, in any line order, and roughly ``holdout`` of each source folder (``images/iiit5k``,
``images/svt``, ``images/ic15``). Paths are written absolute, so the two files can live anywhere.
"""

import argparse
import collections
import hashlib
import os
import sys


def held_out(path: str, fraction: float) -> bool:
    return int(hashlib.sha1(path.encode("utf-8")).hexdigest()[:8], 16) < fraction * 16 ** 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", help="the label file: relative/path<TAB>text per line")
    parser.add_argument("out", help="folder for train.tsv and val.tsv")
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction held out")
    args = parser.parse_args()
    if not 0 < args.holdout < 1:
        parser.error(f"--holdout={args.holdout}: give a fraction between 0 and 1")
    root = os.path.dirname(os.path.abspath(args.labels))
    parts = {"train": [], "val": []}
    counts = collections.Counter()
    try:
        with open(args.labels, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                if "\t" not in line:
                    sys.exit(f"FATAL {args.labels}:{lineno}: no TAB between path and text")
                path, text = line.split("\t", 1)
                part = "val" if held_out(path, args.holdout) else "train"
                parts[part].append(f"{os.path.join(root, path)}\t{text}\n")
                counts[part, os.path.dirname(path)] += 1
    except OSError as e:
        sys.exit(f"FATAL cannot read {args.labels}: {e}")
    os.makedirs(os.path.join(args.out, "real_val"), exist_ok=True)
    for part, lines in parts.items():
        with open(os.path.join(args.out, f"{part}.tsv"), "w", encoding="utf-8") as f:
            f.writelines(lines)
    held = [line.rstrip("\n").split("\t", 1) for line in parts["val"]]
    for name, column in (("test.txt", 0), ("test_label.txt", 1)):
        with open(os.path.join(args.out, "real_val", name), "w", encoding="utf-8") as f:
            f.writelines(row[column] + "\n" for row in held)
    for (part, folder), n in sorted(counts.items()):
        print(f"{part:5s} {folder:20s} {n:6d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
