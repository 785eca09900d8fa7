"""Writes new real-looking word crops cut and joined from real ones at their characters' edges.

    python launch/splice_real_crops.py runs/data/real_train.lmdb runs/data/real_spliced.lmdb \
        [--checkpoint pretrained --n 20000 --seed 0 --contact_sheet runs/data/spliced.jpg]

A reader fits the few thousand real crops it trains on far better than it reads new ones,
and reads real words it has seen in training better than new words of the same length: it
learns words as well as letters. These crops put real letters, lighting and backgrounds
into new strings. A reader (``--checkpoint``) reads every crop of the LMDB; where its greedy
reading is the label exactly, the most probable CTC alignment of the label
(``ctc_host.best_alignment``) places each character in a span of output frames, and a cut
between two characters lies halfway between their spans. Then each new crop is, by turns:

  a piece    characters i..j-1 of one crop (not all of it; at least two), cut at those
             edges;
  a join     the first characters of one crop and the last characters of another (at
             least two of each), the second piece scaled to the first's height.

Labels of one character, with a space, with characters outside the reader's charset, or
with more than ``--max_length`` characters are not used. Crops are written in colour as PNG, with their text, to a new
CRNN-format LMDB (``data.train``'s spec takes it as it takes ``real_train.lmdb``). Cut from
training crops only: never from a set kept apart for measuring.
"""

import argparse
import io
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lmdb", help="a CRNN-format LMDB of real training crops")
    parser.add_argument("out", help="the LMDB to write (a new folder)")
    parser.add_argument("--checkpoint", default="pretrained",
                        help="the reader that places the characters (as evaluate's)")
    parser.add_argument("--n", type=int, default=20_000, help="crops to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_length", type=int, default=14,
                        help="the most characters a written crop holds")
    parser.add_argument("--contact_sheet", default="",
                        help="also draw the first 64 written crops into this image file")
    args = parser.parse_args()
    if args.n < 1 or args.max_length < 2:
        print(f"FATAL --n {args.n} and --max_length {args.max_length}: need n >= 1 and "
              "max_length >= 2", file=sys.stderr)
        return 1

    import os

    import numpy as np

    from grcnn_jax.data.errors import DataError
    from grcnn_jax.data.formats.crnn_lmdb import LmdbSource, write_lmdb
    from grcnn_jax.inference.load import load_for_inference
    from grcnn_jax.text.metrics import edit_distance
    from grcnn_jax.workdir.guard import CheckpointError

    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        print(f"FATAL {args.out} exists and is not empty: give a new folder", file=sys.stderr)
        return 1
    try:
        source = LmdbSource(args.lmdb)
        ckpt = load_for_inference(checkpoint=args.checkpoint)
    except (DataError, CheckpointError, FileNotFoundError) as e:
        print(f"FATAL {e}", file=sys.stderr)
        return 1
    read = reader(ckpt)
    crops = aligned_crops(ckpt, source, args.max_length, read)
    print(f"{len(crops)} of {len(source)} crops read exactly and placed", file=sys.stderr)
    if len(crops) < 2:
        print(f"FATAL {args.lmdb}: fewer than 2 crops read exactly; nothing to cut from",
              file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    made, tried = [], 0

    def records():
        nonlocal tried
        kept, idle = 0, 0
        while kept < args.n:
            drawn = [splice(rng, crops, args.max_length, join=k % 2 == 1) for k in range(200)]
            drawn = [(rgb, text) for rgb, text in drawn if rgb is not None]
            tried += len(drawn)
            readings = greedy(ckpt.charset, read([rgb for rgb, _ in drawn]))
            before = kept
            for (rgb, text), reading in zip(drawn, readings):
                # A cut well off the letters' edges leaves a label the crop does not show.
                if kept == args.n or edit_distance(reading.lower(), text.lower()) > MAX_EDITS:
                    continue
                kept += 1
                if len(made) < 64:
                    made.append((rgb, text))
                yield {"image": png(rgb), "text": text}
            idle = idle + 1 if kept == before else 0
            if idle == IDLE_ROUNDS:
                raise DataError(f"{args.lmdb}: none of the last {200 * IDLE_ROUNDS} crops "
                                f"drawn was read within {MAX_EDITS} edit of its label "
                                f"({kept} kept); nothing more to write")

    try:
        n = write_lmdb(args.out, records())
    except DataError as e:
        print(f"FATAL {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} crops to {args.out} ({tried} drawn; kept those the reader reads "
          f"within {MAX_EDITS} edit of their label)", file=sys.stderr)
    if args.contact_sheet:
        from PIL import Image

        from grcnn_jax.data.synth.generator import labelled_grid

        labelled_grid([(Image.fromarray(rgb), text) for rgb, text in made]).save(
            args.contact_sheet)
        print(f"wrote {args.contact_sheet}", file=sys.stderr)
    return 0


def reader(ckpt, batch: int = 100):
    """A function: list of uint8 [h, w, 3] crops -> float64 [n, T, C] log-probabilities of
    ``ckpt``'s reading, prepared as the loader prepares a record, ``batch`` at a time."""
    import jax
    import numpy as np

    from grcnn_jax.config.defaults import gray_mode
    from grcnn_jax.data.preprocess import prepare_image
    from grcnn_jax.models import create_model
    from grcnn_jax.text import ctc_host

    config = ckpt.config
    height, width = config.image_height, config.image_width
    model = create_model(dict(config.model), ckpt.charset.num_classes)
    variables = {"params": ckpt.params, "batch_stats": ckpt.batch_stats}
    logits_of = jax.jit(lambda images: model.apply(variables, images, train=False))

    def read(crops):
        out = []
        for start in range(0, len(crops), batch):
            chunk = crops[start:start + batch]
            images = np.stack([prepare_image(rgb, height, width, config.data.keep_aspect,
                                             gray_mode(config)) for rgb in chunk])
            pad = batch - len(chunk)                      # one compiled shape
            images = np.concatenate([images, np.zeros((pad, height, width), np.uint8)])
            out.append(ctc_host.log_softmax(np.asarray(logits_of(images))[:len(chunk)]))
        return np.concatenate(out) if out else np.zeros((0, 0, 0))

    return read


def greedy(charset, log_probs) -> list[str]:
    """float [n, T, C] log-probabilities -> the n greedy readings."""
    from grcnn_jax.text import ctc_host

    return ctc_host.greedy_decode(log_probs.argmax(-1), charset) if len(log_probs) else []


def aligned_crops(ckpt, source, max_length: int, read) -> list[tuple]:
    """(uint8 [h, w, 3] image, text, cuts) of each crop of ``source`` that the reader reads
    exactly (``read``: ``reader(ckpt)``); cuts: float [len(text) + 1], the x of each
    character's left edge in px of the crop, then its width."""
    import numpy as np
    from PIL import Image

    from grcnn_jax.data.images import upright
    from grcnn_jax.text import ctc_host

    config, charset = ckpt.config, ckpt.charset
    height, width, keep = config.image_height, config.image_width, config.data.keep_aspect
    usable = []
    for i in range(len(source)):
        record = source[i]
        text = record["text"].strip()
        if (record.get("missing") or not 1 < len(text) <= max_length or " " in text
                or charset.unknown_chars(text)):
            continue
        try:
            with Image.open(io.BytesIO(record["image"])) as im:
                rgb = np.asarray(upright(im).convert("RGB"))
        except OSError:
            continue
        usable.append((rgb, text))
    log_probs = read([rgb for rgb, _ in usable])
    out = []
    for (rgb, text), lp, reading in zip(usable, log_probs, greedy(charset, log_probs)):
        if reading != text:
            continue
        path = ctc_host.best_alignment(lp, charset.encode(text))
        if path is None:
            continue
        frames = len(lp)
        h, w = rgb.shape[:2]
        # px of the model's input the crop fills, and that input's px per frame
        filled = min(width, round(w * height / h)) if keep else width
        scale = w / filled * width / frames
        first = [int(np.flatnonzero(path == k)[0]) for k in range(len(text))]
        last = [int(np.flatnonzero(path == k)[-1]) for k in range(len(text))]
        inner = [(last[k] + 1 + first[k + 1]) / 2 * scale for k in range(len(text) - 1)]
        out.append((rgb, text, np.clip(np.array([0.0, *inner, float(w)]), 0, w)))
    return out


# A drawn crop is kept when the reader's greedy reading is within this many edits of its label
# (case aside): not only crops it already reads, but not those whose cut went astray.
MAX_EDITS = 1
IDLE_ROUNDS = 20            # rounds of 200 drawn crops with none kept: stop, never spin

# The fewest characters a piece holds: a single character cut from a crop is a sliver whose
# edges the alignment places too roughly (docs/accuracy.md, leg 18).
MIN_PIECE = 2


def splice(rng, crops: list[tuple], max_length: int, join: bool):
    """One new crop from ``aligned_crops``' crops: (uint8 [h, w, 3], text), or (None, None)
    where the draw gives nothing usable (too long, a sliver); see the module doc."""
    import numpy as np
    from PIL import Image

    def piece(crop, i, j):
        rgb, text, cuts = crop
        x0, x1 = int(round(cuts[i])), int(round(cuts[j]))
        return rgb[:, x0:x1], text[i:j]

    a = crops[rng.integers(len(crops))]
    n = len(a[1])
    if not join:
        i = int(rng.integers(n - MIN_PIECE + 1))
        j = int(rng.integers(i + MIN_PIECE, n + 1))
        if (i, j) == (0, n):
            return None, None
        rgb, text = piece(a, i, j)
    else:
        b = crops[rng.integers(len(crops))]
        if len(b[1]) < MIN_PIECE:
            return None, None
        left, left_text = piece(a, 0, int(rng.integers(MIN_PIECE, n + 1)))
        right, right_text = piece(b, int(rng.integers(len(b[1]) - MIN_PIECE + 1)), len(b[1]))
        text = left_text + right_text
        if len(text) > max_length or min(left.shape[1], right.shape[1]) < 2:
            return None, None
        h = left.shape[0]
        w = max(1, round(right.shape[1] * h / right.shape[0]))
        right = np.asarray(Image.fromarray(right).resize((w, h), Image.Resampling.BILINEAR))
        rgb = np.concatenate([left, right], axis=1)
    if rgb.shape[1] < 2 * len(text) or rgb.shape[0] < 4:
        return None, None
    return np.ascontiguousarray(rgb), text


def png(rgb) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())
