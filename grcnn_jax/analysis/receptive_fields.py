"""Effective receptive fields of a GRCNN's output frames: the models, the fields (gradients of a
frame's output with respect to the input pixels) and their geometry. ``grcnn_jax.analysis.plots``
draws them and is the command (its docstring says what the figure shows).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from grcnn_jax.models import create_model, frames_for_width, normalize_images
from grcnn_jax.models.grcnn import BACKBONE, BLSTM2, POOL_WIDTH_STRIDES
from grcnn_jax.config.defaults import load_config_file, get_base_config
from grcnn_jax.text.charset import Charset
from grcnn_jax.inference.load import load_for_inference
from grcnn_jax.data.images import to_grayscale
from grcnn_jax.data.preprocess import resize

TARGETS = ("sum", "energy", "logit")
# The ablations of configs/cnn.py, rcl.py, grcl.py, as changes to the paper's model section.
ABLATIONS = {"cnn": {"T": 0}, "rcl": {"gated": False}, "grcl": {}}
MAX_GRID_FRAMES = 8         # columns of one plot_fields figure


@dataclasses.dataclass
class FieldModel:
    """A model to draw: its config ``model`` section, its variables and a panel title.

    Attributes:
      title: the panel title.
      model_config: the ``model`` section of a training config.
      params, batch_stats: the GRCNN's variables (``params['backbone']`` etc.).
      image_size: the (height, width) the model reads.
      keep_aspect: how images are resized for it (the training config's ``data.keep_aspect``).
    """

    title: str
    model_config: ml_collections.ConfigDict
    params: Any
    batch_stats: Any
    image_size: tuple[int, int] = (32, 100)
    keep_aspect: bool = False

    @property
    def kind(self) -> str:
        """'cnn' (T = 0), 'rcl' (ungated) or 'grcl'."""
        return kind_of(self.model_config)

    @property
    def num_classes(self) -> int:
        return int(np.shape(self.params[BLSTM2]["linear"]["kernel"])[-1])


def kind_of(model_config: ml_collections.ConfigDict) -> str:
    return "cnn" if model_config.T == 0 else ("grcl" if model_config.gated else "rcl")


# ----------------------------------------------------------------------------- the fields
@functools.lru_cache(maxsize=16)
def _field_function(model_json: str, num_classes: int, target: str):
    """The jitted ``(variables, image uint8 [H,W], frames int32 [K]) -> |grad| [K,H,W]`` for
    one model architecture (cached: one compilation per architecture, target and K)."""
    model = create_model(ml_collections.ConfigDict(json.loads(model_json)), num_classes)
    backbone = model.backbone()

    @jax.jit
    def fields(variables, image, frames):
        x = normalize_images(image[None], jnp.float32)                # [1,H,W,1] in [-1, 1]
        if target == "logit":
            def forward(x):                                            # [F, classes]
                return model.apply(variables, x, train=False)[0]
            out, vjp = jax.vjp(forward, x)
            weights = jax.nn.one_hot(jnp.argmax(out, axis=-1), out.shape[-1], dtype=out.dtype)
        else:
            sub = {"params": variables["params"][BACKBONE],
                   "batch_stats": variables["batch_stats"][BACKBONE]}

            def forward(x):                                            # [F, C] (the 1 row)
                return backbone.apply(sub, x, train=False)[0, 0].astype(jnp.float32)
            out, vjp = jax.vjp(forward, x)
            # d sum(y) / dy = 1;  d (|y|^2 / 2) / dy = y
            weights = jnp.ones_like(out) if target == "sum" else out
        # One cotangent per requested frame: the weights at that frame, zero elsewhere.
        at_frame = frames[:, None] == jnp.arange(out.shape[0])[None, :]  # [K, F]
        cotangents = at_frame[:, :, None].astype(out.dtype) * weights[None]
        grads = jax.vmap(lambda c: vjp(c)[0])(cotangents)              # [K, 1, H, W, 1]
        return jnp.abs(grads[:, 0, :, :, 0].astype(jnp.float32))

    return fields


def effective_fields(m: FieldModel, image: np.ndarray, frame: int | Sequence[int] | None = None,
                     target: str = "sum") -> np.ndarray:
    """The magnitude of the gradient of frame outputs with respect to the input pixels.

    Args:
      m: the model.
      image: uint8 [H, W] at the model's input size (32 x 100 by default).
      frame: one frame (returns [H, W]), several ([K, H, W], in that order), or None for
        every frame ([frames, H, W]).
      target: 'sum', 'energy' or 'logit' (see the module doc).
    Returns:
      float32 fields, unnormalized, >= 0; exactly 0 at pixels the frame cannot see.
    """
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: choose one of {TARGETS}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.shape != tuple(m.image_size):
        raise ValueError(f"expected a uint8 image of shape {tuple(m.image_size)} (the model's "
                         f"input), got {image.dtype} {image.shape}")
    n = frames_for_width(image.shape[1])
    frames = np.arange(n) if frame is None else np.atleast_1d(np.asarray(frame, np.int32))
    if frames.ndim != 1 or frames.size == 0 or frames.min() < 0 or frames.max() >= n:
        raise ValueError(f"frame {frame!r} is out of range: the model has frames 0..{n - 1}")
    fn = _field_function(m.model_config.to_json(), m.num_classes, target)
    variables = {"params": m.params, "batch_stats": m.batch_stats}
    out = np.asarray(fn(variables, jnp.asarray(image), jnp.asarray(frames, jnp.int32)))
    return out[0] if frame is not None and np.ndim(frame) == 0 else out


# ----------------------------------------------------------------------------- the geometry
def theoretical_columns(model_config: ml_collections.ConfigDict, frame: int,
                        width: int = 100) -> tuple[int, int]:
    """The input columns ``(lo, hi)`` (inclusive) that backbone frame ``frame`` can see.

    Propagates the frame's column interval back through the layers, clipping it at each
    layer to the columns that exist there: conv4 (2 wide, valid), each pool (2 wide;
    stride 2, or stride 1 with a column of padding each side), each GRCL (its 3x3
    feed-forward conv and T recurrent 3x3 convs: T + 1 columns each side; the gates' 1x1
    convs add nothing) and conv0 (3x3). Unclipped this is 4f - 9 - 10(T+1) .. 4f + 8 + 10(T+1).
    """
    n = frames_for_width(width)
    if not 0 <= frame < n:
        raise ValueError(f"frame {frame} is out of range: {width}-wide input has frames 0..{n - 1}")
    widths = [width]                              # the width entering each pool
    for stride in POOL_WIDTH_STRIDES:
        widths.append(widths[-1] // 2 if stride == 2 else widths[-1] + 1)
    lo, hi = frame, frame + 1                     # conv4: 2 wide, valid
    for i in reversed(range(len(POOL_WIDTH_STRIDES))):
        stride, w_in = POOL_WIDTH_STRIDES[i], widths[i]
        if stride == 2:
            lo, hi = 2 * lo, 2 * hi + 1           # window [2j, 2j+1]
        else:
            lo, hi = lo - 1, hi                   # padded window [j, j+1] -> columns j-1, j
        lo, hi = max(lo, 0), min(hi, w_in - 1)
        reach = 1 if i == 0 else model_config.T + 1   # conv0, or a GRCL
        lo, hi = max(lo - reach, 0), min(hi + reach, w_in - 1)
    return lo, hi


def frame_center(frame: int) -> float:
    """The input column (fractional) a backbone frame is centred on: 4f - 0.5."""
    return 4 * frame - 0.5


def effective_columns(field: np.ndarray, mass: float = 1.0) -> tuple[int, int]:
    """The columns ``(lo, hi)`` a field [H, W] covers: with ``mass`` 1, from the first to the
    last non-zero column; below 1, the central interval holding that fraction of the field's
    total (cut (1 - mass) / 2 from each side). (-1, -1) for an all-zero field."""
    profile = np.asarray(field, np.float64).sum(axis=0)
    total = profile.sum()
    if total <= 0:
        return -1, -1
    if mass >= 1:
        nz = np.flatnonzero(profile > 0)
        return int(nz[0]), int(nz[-1])
    cdf = np.cumsum(profile) / total
    cut = (1 - mass) / 2
    eps = 1e-9                                    # rounding in the cumulative sums
    return (int(np.searchsorted(cdf, cut + eps, side="right")),
            int(np.searchsorted(cdf, 1 - cut - eps, side="left")))


# ----------------------------------------------------------------------------- models, images
def _config_file(name: str) -> ml_collections.ConfigDict | None:
    """configs/<name>.py's get_config() when running from a checkout (None otherwise)."""
    import pathlib


    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / f"{name}.py"
    return load_config_file(str(path)) if path.is_file() else None


def untrained_config(name: str) -> ml_collections.ConfigDict:
    """The training config of configs/<name>.py ('cnn', 'rcl', 'grcl'); from the package's
    base config and ``ABLATIONS`` where configs/ is not at hand (an installed package)."""
    if name not in ABLATIONS:
        raise ValueError(f"{name!r}: choose one of {sorted(ABLATIONS)}")
    config = _config_file(name)
    if config is None:
        config = get_base_config()
        config.model.update(ABLATIONS[name])
    return config


def untrained(name: str, seed: int = 0, **model_overrides: Any) -> FieldModel:
    """configs/<name>.py's model with random weights, titled '<name> ... (untrained)'.

    ``model_overrides`` change fields of its ``model`` section (e.g. smaller widths).
    """
    config = untrained_config(name)
    config.model.update(model_overrides)
    model = create_model(config.model, Charset(config.charset).num_classes)
    size = (config.image_height, config.image_width)
    # The 'rbg' generator: its init compiles in half the time of the default threefry's
    # (seconds on a CPU); which random numbers an untrained model gets does not matter.
    variables = jax.jit(model.init)(jax.random.key(seed, impl="rbg"),
                                    jnp.zeros((1, *size), jnp.uint8))
    return FieldModel(f"{_describe(config.model)} (untrained)", config.model,
                      variables["params"], variables["batch_stats"], size,
                      config.data.keep_aspect)


def _describe(m: ml_collections.ConfigDict) -> str:
    kind = kind_of(m)
    return kind.upper() if kind == "cnn" else f"{kind.upper()} T={m.T}"


def from_checkpoint(workdir: str | None = None, step: str | int = "latest",
                    checkpoint: str | None = None) -> FieldModel:
    """A trained model from a workdir (``step``: 'latest', 'best' or a number) or from a
    checkpoint step directory."""
    ckpt = load_for_inference(workdir=workdir, checkpoint=checkpoint, step=step)
    c = ckpt.config
    return FieldModel(f"{_describe(c.model)}, step {ckpt.step}", c.model, ckpt.params,
                      ckpt.batch_stats, (c.image_height, c.image_width), c.data.keep_aspect)


def render_word(text: str, height: int = 32, width: int = 100) -> np.ndarray:
    """A clean word image, uint8 [height, width]: ``text`` in DejaVu Sans, dark on light,
    stretched to the size like the loader does (no augmentation: the gaps stay clear)."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    if not text.strip():
        raise ValueError("text is empty")
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 48)
    left, top, right, bottom = font.getbbox(text)
    pad = 8
    im = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 235)
    ImageDraw.Draw(im).text((pad - left, pad - top), text, font=font, fill=20)
    return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))


def read_image(path: str, height: int = 32, width: int = 100,
               keep_aspect: bool = False) -> np.ndarray:
    """An image file as the loader prepares it: grayscale uint8 [height, width]."""
    with open(path, "rb") as f:
        return resize(to_grayscale(f.read()), height, width, keep_aspect)
