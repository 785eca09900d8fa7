"""Effective receptive fields: which input pixels one output frame listens to (the paper's figure).

For a word image and one CTC frame f, the field is the magnitude of the gradient of that
frame's output with respect to the input pixels: ``jax.vjp`` of the forward pass, one
cotangent per frame (vmapped, one jitted call for any number of frames), BatchNorm in
eval mode so the frames do not mix through batch statistics. What "the frame's output"
is (``target``):

  ``sum``     sum over channels of the backbone's conv4 features at f (the default; the
              classic effective-receptive-field probe, Luo et al. 2016)
  ``energy``  half the squared norm of those features (weights each channel by its value)
  ``logit``   the logit of the class the model predicts at f, through the two BLSTMs
              (these see the whole sequence, so this field is not confined to the
              theoretical one of the backbone)

The *theoretical* field of a frame (``theoretical_columns``) is every input column that
some path through the backbone's layers connects to the frame: conv0 3x3, a 2x2/2 pool,
GRCL 1 (its 3x3 feed-forward conv and T recurrent 3x3 convs: T + 1 columns each side; the
1x1 gate convs add none), a 2x2/2 pool, GRCL 2, a 2x2 pool of width stride 1 padded by a
column each side, GRCL 3, the same pool, conv4 2x2 valid. With R = T + 1 that is columns
4f - 9 - 10R .. 4f + 8 + 10R, clipped to the image: 38 columns for the plain CNN (T = 0),
78 for T = 2 and the whole 100-column image for the paper's T = 5. The field is centred on
column 4f - 0.5: the 26 frames of a 100-wide image sit 4 columns apart.

What to look for in trained models: a plain CNN's effective field is a compact blob around
the frame, its extent fixed by the architecture; the recurrence of an RCL widens it into the
neighbouring characters; a GRCL's gates, computed from the input, scale the recurrent context
down where it does not belong to the character under the frame, so the field takes the
character's shape and stops at the gaps between characters. (The authors show this with the
fields of RCNN, DenseNet and GRCNN models; here the comparison is with the paper's own
ablations, the CNN with T = 0 and the ungated RCL.) Untrained models show only the geometry.

    grcnn-visualize --frame 13 --out fields.png \\
        --workdir runs/cnn --workdir runs/rcl --workdir runs/grcl --image word.png
    grcnn-visualize --frame 5,13,21 --out fields.png     # untrained paper models

Without ``--workdir`` the command builds the models of configs/cnn.py, rcl.py and grcl.py
(the paper's sizes) with random weights, labelled "untrained", and draws a rendered word
(``--text``), so it runs on a fresh machine.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from grcnn_jax.analysis.receptive_fields import (MAX_GRID_FRAMES, FieldModel, effective_fields, frame_center,
                                                 theoretical_columns)


# ----------------------------------------------------------------------------- drawing
def _overlay(field: np.ndarray, gamma: float) -> np.ndarray:
    """RGBA [H, W, 4]: the field normalized to its maximum (``** gamma``), coloured, with its
    opacity rising with it from 0 (pixels the frame ignores show the plain grey image)."""
    from matplotlib import colormaps

    v = np.clip(field / max(float(field.max()), 1e-30), 0, 1) ** gamma
    rgba = colormaps["inferno"](0.3 + 0.7 * v)
    rgba[..., 3] = 0.95 * np.sqrt(v)
    return rgba


def plot_fields(models: Sequence[FieldModel], image: np.ndarray, frames: int | Sequence[int] = 13,
                fields: Sequence[np.ndarray] | None = None, target: str = "sum",
                gamma: float = 1.0, dpi: int = 150):
    """A grid: one row per model, one column per frame. Each panel is the image in grey with
    the frame's field (|gradient| normalized to its maximum, ``** gamma``) in colour over it,
    the theoretical field's bounds as cyan lines and the frame's centre as a white tick.

    Args:
      fields: precomputed, per model [K, H, W] for the K frames (or [H, W] for one frame);
        default: computed with ``effective_fields(m, image, frames, target)``.
    Returns:
      the matplotlib Figure (draw it with ``fig.savefig`` or show it in a notebook).
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    frames = [int(f) for f in np.atleast_1d(frames)]
    if len(frames) > MAX_GRID_FRAMES:
        raise ValueError(f"{len(frames)} frames: at most {MAX_GRID_FRAMES} in one figure "
                         "(plot_profiles shows every frame)")
    if fields is None:
        fields = [effective_fields(m, image, frames, target) for m in models]
    fields = [np.asarray(f).reshape(len(frames), *image.shape) for f in fields]
    h, w = image.shape
    panel_w = 3.2 if len(frames) > 1 else 6.0
    # A plain Figure (not pyplot's) when no interactive backend is in use: a script that
    # draws many figures leaks nothing; in a notebook pyplot's figure displays itself.
    make = plt.figure if "inline" in plt.get_backend() else Figure
    fig = make(figsize=(panel_w * len(frames), 0.3 + (panel_w * h / w + 0.35) * len(models)),
               dpi=dpi)
    axes = fig.subplots(len(models), len(frames), squeeze=False)
    for row, (m, field) in enumerate(zip(models, fields, strict=True)):
        for col, f in enumerate(frames):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.imshow(_overlay(field[col], gamma), interpolation="nearest")
            if target != "logit":                # through the BLSTMs: every column
                lo, hi = theoretical_columns(m.model_config, f, w)
                for x in (lo - 0.5, hi + 0.5):
                    ax.axvline(x, color="cyan", lw=1.0)
            ax.plot([frame_center(f)], [-0.5], marker="v", color="white", markeredgecolor="k",
                    markersize=5, clip_on=False)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_title(f"{m.title}, frame {f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    what = {"sum": "sum of the conv4 features", "energy": "squared norm of the conv4 features",
            "logit": "predicted class's logit"}[target]
    bounds = ("the BLSTMs see every column" if target == "logit"
              else "cyan: the theoretical field")
    fig.suptitle(f"|d ({what} at the frame) / d pixels|, normalized; {bounds}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_profiles(models: Sequence[FieldModel], fields: Sequence[np.ndarray],
                  target: str = "sum", dpi: int = 120):
    """Every frame at once: per model, each frame's column profile (the field summed over
    rows, normalized per frame) as one row of an image [frames, W], with the theoretical
    field's bounds as cyan lines (not for ``target`` 'logit': the BLSTMs see every column).
    ``fields``: per model [frames, H, W]."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    make = plt.figure if "inline" in plt.get_backend() else Figure
    fig = make(figsize=(4 * len(models), 3.2), dpi=dpi)
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    for ax, m, f in zip(axes, models, fields, strict=True):
        f = np.asarray(f)
        profile = f.sum(axis=1)
        profile = profile / np.maximum(profile.max(axis=1, keepdims=True), 1e-30)
        ax.imshow(profile, aspect="auto", cmap="inferno", interpolation="nearest")
        if target != "logit":
            bounds = np.array([theoretical_columns(m.model_config, k, f.shape[2])
                               for k in range(f.shape[0])])
            ks = np.arange(f.shape[0])
            ax.step(bounds[:, 0] - 0.5, ks, where="mid", color="cyan", lw=0.8)
            ax.step(bounds[:, 1] + 0.5, ks, where="mid", color="cyan", lw=0.8)
        ax.set_title(m.title, fontsize=9)
        ax.set_xlabel("input column")
        ax.set_ylabel("frame")
    fig.tight_layout()
    return fig


