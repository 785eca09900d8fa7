"""Effective receptive fields: which input pixels one output frame of the backbone listens to.

The paper's figure: for an image and one CTC frame f, the gradient of the backbone's
features at f with respect to the input pixels (``jax.vjp``, eval-mode BatchNorm, so
frames do not mix through batch statistics). A plain CNN's field is a fixed blob around
the frame's position; the GRCL's gates suppress the recurrent spread where the context
does not belong to the character, so its field follows the character's strokes and stops
at the gaps between characters.

    python -m grcnn_jax.visualize --image word.png --frame 13 --out fields.png \\
        --workdir runs/cnn --workdir runs/rcl --workdir runs/grcl
    python -m grcnn_jax.visualize --frame 13 --out fields.png     # untrained paper models

Without ``--workdir`` the command builds the paper's CNN, RCL and GRCL models
(configs/cnn.py, rcl.py, grcl.py) with random weights and renders a synthetic word, so
it runs on a fresh machine; the panels then say "untrained".
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from grcnn_jax.models import Backbone, create_model, normalize_images
from grcnn_jax.models.grcnn import POOL_WIDTH_STRIDES


@dataclasses.dataclass
class FieldModel:
    """A model to draw: its config section, variables and a panel title."""

    title: str
    model_config: ml_collections.ConfigDict
    params: Any
    batch_stats: Any


def _backbone(model_config: ml_collections.ConfigDict) -> Backbone:
    # The GRCNN's own backbone submodule, built from the same fields (its variables are
    # params['backbone'] / batch_stats['backbone']).
    model = create_model(model_config, num_classes=2)
    return Backbone(model.conv0_features, tuple(model.grcl_features), model.out_features,
                    T=model.T, gated=model.gated, share=model.share, dtype=model.dtype,
                    bn_momentum=model.bn_momentum, bn_epsilon=model.bn_epsilon,
                    scan_unroll=model.scan_unroll, remat=model.remat)


def effective_fields(m: FieldModel, image: np.ndarray) -> np.ndarray:
    """|d sum(features[frame]) / d pixels| for every frame.

    Args:
      m: the model.
      image: uint8 [H, W] (the model's input size, 32 x 100 by default).
    Returns:
      float32 [frames, H, W], each frame's field (unnormalized, >= 0).
    """
    backbone = _backbone(m.model_config)
    variables = {"params": m.params["backbone"], "batch_stats": m.batch_stats["backbone"]}
    x = normalize_images(jnp.asarray(image)[None], backbone.dtype)

    def features(x):
        return backbone.apply(variables, x, train=False)[0, 0].astype(jnp.float32)  # [F, C]

    out, vjp = jax.vjp(features, x)
    frames = out.shape[0]

    @jax.jit
    def field(f):
        cotangent = jnp.zeros_like(out).at[f].set(1.0)
        return jnp.abs(vjp(cotangent)[0][0, ..., 0])

    return np.stack([np.asarray(field(f)) for f in range(frames)])


def theoretical_columns(model_config: ml_collections.ConfigDict, frame: int,
                        width: int = 100) -> tuple[int, int]:
    """The input columns ``[lo, hi]`` (inclusive) that backbone frame ``frame`` can see.

    Propagates the frame's column interval back through the layers: conv4 (2x2 valid),
    each pool (2 wide; stride 2, or stride 1 with one column of padding each side), each
    GRCL (a 3x3 feed-forward conv and T recurrent 3x3 convs: +-(T + 1) columns; the 1x1
    gate convs add nothing), conv0 (3x3), clipped to the columns that exist.
    """
    widths = [width]                              # the width entering each pool
    for stride in POOL_WIDTH_STRIDES:
        widths.append(widths[-1] // 2 if stride == 2 else widths[-1] + 1)
    lo, hi = frame, frame + 1                     # conv4: 2 wide, valid
    for i in reversed(range(len(POOL_WIDTH_STRIDES))):
        stride, w_in = POOL_WIDTH_STRIDES[i], widths[i]
        if stride == 2:
            lo, hi = 2 * lo, 2 * hi + 1
        else:
            lo, hi = lo - 1, hi                   # padded window [j, j+1] -> columns j-1, j
        lo, hi = max(lo, 0), min(hi, w_in - 1)
        reach = 1 if i == 0 else model_config.T + 1   # conv0, or a GRCL
        lo, hi = max(lo - reach, 0), min(hi + reach, w_in - 1)
    return lo, hi


def plot_fields(models: Sequence[FieldModel], image: np.ndarray, frame: int,
                fields: Sequence[np.ndarray] | None = None):
    """One panel per model: the image in grey, frame ``frame``'s field in colour over it,
    the theoretical receptive field's columns marked. Returns the matplotlib Figure."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fields = fields if fields is not None else [effective_fields(m, image)[frame] for m in models]
    fig, axes = plt.subplots(len(models), 1, figsize=(6, 1.6 * len(models)), squeeze=False)
    for ax, m, field in zip(axes[:, 0], models, fields):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.imshow(field / max(field.max(), 1e-12), cmap="inferno", alpha=0.65, vmin=0, vmax=1)
        lo, hi = theoretical_columns(m.model_config, frame, image.shape[1])
        ax.axvline(lo - 0.5, color="cyan", lw=0.8)
        ax.axvline(hi + 0.5, color="cyan", lw=0.8)
        ax.set_title(f"{m.title}: frame {frame}", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def untrained(name: str, seed: int = 0) -> FieldModel:
    """configs/<name>.py's model with random weights (for a fresh machine)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    model = create_model(config.model, 37)
    variables = model.init(jax.random.key(seed),
                           np.zeros((1, config.image_height, config.image_width), np.uint8))
    return FieldModel(f"{name} (untrained)", config.model, variables["params"],
                      variables["batch_stats"])


def from_checkpoint(workdir: str, step: str | int = "latest") -> FieldModel:
    from grcnn_jax.checkpoints import load_for_inference

    ckpt = load_for_inference(workdir=workdir, step=step)
    m = ckpt.config.model
    kind = "cnn" if m.T == 0 else ("grcl" if m.gated else "rcl")
    return FieldModel(f"{kind}, T={m.T} (step {ckpt.step})", m, ckpt.params, ckpt.batch_stats)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    from grcnn_jax.data.pipeline import resize, to_grayscale

    p = argparse.ArgumentParser(prog="python -m grcnn_jax.visualize",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", action="append", default=[],
                   help="a training workdir (repeat: e.g. CNN, RCL, GRCL); none = untrained "
                        "paper models")
    p.add_argument("--image", help="a word image (default: a synthetic word)")
    p.add_argument("--frame", type=int, default=13)
    p.add_argument("--out", default="receptive_fields.png")
    args = p.parse_args(argv)

    models = ([from_checkpoint(w) for w in args.workdir] if args.workdir
              else [untrained(n) for n in ("cnn", "rcl", "grcl")])
    if args.image:
        with open(args.image, "rb") as f:
            image = resize(to_grayscale(f.read()), 32, 100, keep_aspect=False)
    else:
        from grcnn_jax.data.synth import SynthWords
        image = resize(SynthWords(1, seed=7)[0]["image"], 32, 100, keep_aspect=False)
    plot_fields(models, image, args.frame).savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
