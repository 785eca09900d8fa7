"""The PyTorch peer at other widths: runs its script with its GRCNN's layers resized.

    PEER_PYTHON benchmarks/peer_widths.py --peer torch_grcnn.py \\
        --widths 48,48,96,160,256 --gflop 0.21,0.62 -- train --batch 32 --T 2 --hidden 128

The peer (shared/bench/torch_grcnn.py) builds the paper's widths (64 / 64, 128, 256 / 512);
its ``--T`` and ``--hidden`` are flags, its widths are not. This runs the peer's own ``main``
after swapping, in its ``GRCNN``, the width-bearing layers (the first conv, the three
GRCLs, the last conv and its BatchNorm, the two BLSTMs) for the peer's own classes built at
the given widths (conv0, grcl1, grcl2, grcl3, out), and its analytic FLOP count (which
hard-codes the paper's widths) for ``--gflop`` forward,train per image (ours, from
``grcnn_jax.models.flops``: the same network). Everything else (timing, optimizer, CTC,
memory, the JSON it prints) is the peer's.

Runs in the peer's Python, by path: it imports nothing but the peer script and the standard
library (torch comes through the peer's module), so it runs where jax is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

# The peer's GRCNN.features, index by index, as the script builds it: what is swapped.
FEATURES = ("Conv2d", "ReLU", "MaxPool2d", "GRCL", "MaxPool2d", "GRCL", "MaxPool2d", "GRCL",
            "MaxPool2d", "Conv2d", "BatchNorm2d", "ReLU")


def load_peer(path: str):
    spec = importlib.util.spec_from_file_location("torch_grcnn", path)
    if spec is None:
        raise SystemExit(f"--peer {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resize(peer, widths: tuple[int, int, int, int, int]) -> None:
    """Replaces ``peer.GRCNN`` with a builder of the same network at ``widths``."""
    c0, g1, g2, g3, out = widths
    paper = peer.GRCNN
    nn = peer.nn

    def build(iterations: int = 5, hidden: int = 256, num_classes: int = peer.NUM_CLASSES):
        with peer.torch.device("meta"):     # the paper-width layers are never allocated
            model = paper(iterations, hidden, num_classes)
        found = tuple(type(layer).__name__ for layer in model.features)
        if found != FEATURES:
            raise SystemExit(f"the peer's GRCNN.features changed: {found}, expected {FEATURES}")
        f = model.features
        f[0] = nn.Conv2d(1, c0, 3, padding=1)
        f[3], f[5], f[7] = (peer.GRCL(cin, cout, iterations)
                            for cin, cout in ((c0, g1), (g1, g2), (g2, g3)))
        f[9] = nn.Conv2d(g3, out, 2, bias=False)
        f[10] = nn.BatchNorm2d(out)
        model.sequence[0] = peer.BLSTM(out, hidden, out)
        model.sequence[1] = peer.BLSTM(out, hidden, num_classes)
        return model

    peer.GRCNN = build


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", required=True, help="the peer's script (torch_grcnn.py)")
    ap.add_argument("--widths", required=True,
                    help="conv0,grcl1,grcl2,grcl3,out channels, e.g. 48,48,96,160,256")
    ap.add_argument("--gflop", required=True,
                    help="forward,train model GFLOP per image at these widths")
    ap.add_argument("rest", nargs=argparse.REMAINDER,
                    help="after --: the peer's own command line")
    a = ap.parse_args(argv)
    try:
        widths = tuple(int(w) for w in a.widths.split(","))
        forward, train = (float(g) * 1e9 for g in a.gflop.split(","))
    except ValueError:
        ap.error(f"--widths {a.widths!r} / --gflop {a.gflop!r}: need 5 and 2 numbers")
    if len(widths) != 5 or min(widths) < 1:
        ap.error(f"--widths {a.widths!r}: needs 5 positive channel counts")
    peer = load_peer(a.peer)
    resize(peer, widths)
    peer.flops_summary = lambda iterations, hidden: ([], forward, train)
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    peer.main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
