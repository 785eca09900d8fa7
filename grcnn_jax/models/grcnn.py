"""The GRCNN recognizer: GRCL backbone -> two BLSTMs -> per-frame class logits (for CTC).

Shapes for the paper's configuration (32x100 grayscale input, widths 64/64/128/256/512)::

    input  [B,32,100,1]
    conv0  3x3 64 + ReLU, maxpool 2x2/2                        -> [B,16,50,64]
    grcl1  64,  maxpool 2x2/2                                  -> [B,8,25,64]
    grcl2  128, maxpool 2x2, stride (2,1), width padding 1     -> [B,4,26,128]
    grcl3  256, maxpool 2x2, stride (2,1), width padding 1     -> [B,2,27,256]
    conv4  2x2 valid 512, no bias + BN + ReLU                  -> [B,1,26,512]
    blstm1 + linear 512, blstm2 + linear classes               -> [B,26,classes]

Max pooling pads with -inf (PyTorch ``MaxPool2d`` semantics).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from grcnn_jax.models import conv as convs
from grcnn_jax.models.grcl import GRCL, GRCLOptions, batch_norm, default_kernel_init
from grcnn_jax.models.guide import GUIDE, AttentionGuide
from grcnn_jax.models.sequence import BidirectionalLSTM

Dtype = Any

# Width stride of the 2x2 max pool after conv0 and after each GRCL: 2, or 1 with the
# width padded by one on each side (the paper's 2x1 pools, which keep the frames).
POOL_WIDTH_STRIDES = (2, 2, 1, 1)


def max_pool_2x2(x: jax.Array, width_stride: int) -> jax.Array:
    """2x2 max pool, height stride 2; [B,H,W,C] -> [B,H//2,W//2,C] or [B,H//2,W+1,C].

    Same values as ``nn.max_pool(x, (2, 2), (2, s), padding)``, written as elementwise maxima
    of strided slices: their backward pass is a few cheap elementwise ops, where the generic
    pool's select-and-scatter cost XLA:CPU ~20% of the whole train step. (Not as a reshape and
    a max over the window axis: under jit, XLA:CPU in jax 0.10.2 computes that reduction's
    gradient wrongly after a BatchNorm + ReLU, as in a GRCL with T = 1 or unrolled
    iterations; tests/models/test_model.py checks the jitted gradient against finite differences.)
    """
    b, h, w, c = x.shape
    h2 = h // 2
    x = jnp.maximum(x[:, 0:2 * h2:2], x[:, 1:2 * h2:2])
    if width_stride == 2:
        w2 = w // 2
        return jnp.maximum(x[:, :, 0:2 * w2:2], x[:, :, 1:2 * w2:2])
    if width_stride != 1:
        raise ValueError(f"width_stride must be 1 or 2, got {width_stride}")
    x = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), constant_values=-jnp.inf)
    return jnp.maximum(x[:, :, :-1], x[:, :, 1:])


def frames_for_width(width: int) -> int:
    """Output frames (CTC time steps) of the backbone for input images ``width`` pixels wide."""
    return (width // 2) // 2 + 1


def normalize_images(images: jax.Array, dtype: Dtype) -> jax.Array:
    """uint8 [B,H,W] or [B,H,W,1] in 0..255 -> ``dtype`` [B,H,W,1] in [-1, 1].

    Float input is taken as already normalized and only reshaped and cast.
    """
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"expected grayscale images [B,H,W] or [B,H,W,1], got shape {images.shape}")
    if jnp.issubdtype(images.dtype, jnp.integer):
        return images.astype(dtype) * (2.0 / 255.0) - 1.0
    return images.astype(dtype)


class InputConv(nn.Module):
    """conv0: the 3x3 'SAME' convolution of the image, with bias: [B,H,W,1] -> [B,H,W,features].

    Its variables are ``nn.Conv``'s (``kernel`` [3,3,1,features], He normal; ``bias``
    [features], zeros), and so is its function. How it runs: in inference with the CPU's
    convolutions (``conv_impl`` resolving to 'winograd') as ``conv.taps3x3``, which does not
    slow down at large batches as XLA:CPU's convolution of one channel does; otherwise (training,
    accelerators, the ONNX graph) as XLA's convolution.
    """

    features: int
    options: GRCLOptions = GRCLOptions()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dtype = self.options.dtype
        kernel = self.param("kernel", default_kernel_init, (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel = x.astype(dtype), kernel.astype(dtype)
        cpu = convs.resolve_impl(self.options.conv_impl) == "winograd"
        if not train and cpu and x.shape[-1] == 1:
            y = convs.taps3x3(x, kernel)
        else:
            y = convs.conv(x, kernel, "xla")
        return y + bias.astype(dtype)


class Backbone(nn.Module):
    """The convolutional feature extractor: [B,H,W,1] -> [B,H/32,frames,out_features].

    Attributes:
      conv0_features, grcl_features, out_features: the widths (paper: 64, (64,128,256), 512).
      options: handed to every GRCL as it is (see ``GRCLOptions``); its dtype and BatchNorm
        settings also apply to conv0, conv4 and bn4.
    """

    conv0_features: int = 64
    grcl_features: Sequence[int] = (64, 128, 256)
    out_features: int = 512
    options: GRCLOptions = GRCLOptions()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if len(self.grcl_features) != len(POOL_WIDTH_STRIDES) - 1:
            raise ValueError(f"grcl_features needs {len(POOL_WIDTH_STRIDES) - 1} widths, got {self.grcl_features}")
        o = self.options
        x = nn.relu(InputConv(self.conv0_features, o, name="conv0")(x, train))
        x = max_pool_2x2(x, POOL_WIDTH_STRIDES[0])
        for i, (features, stride) in enumerate(zip(self.grcl_features, POOL_WIDTH_STRIDES[1:])):
            x = GRCL(features, o, name=f"grcl{i + 1}")(x, train)
            x = max_pool_2x2(x, stride)
        x = nn.Conv(self.out_features, (2, 2), padding="VALID", use_bias=False, dtype=o.dtype,
                    kernel_init=default_kernel_init, name="conv4")(x)
        x = batch_norm(train, o.bn_momentum, o.bn_epsilon, o.dtype, "bn4")(x)
        return nn.relu(x)


# GRCNN's submodules, by the names its variables have: the top-level parameter groups (what
# config.freeze names) and the classifier, the last BLSTM's linear map with one output column
# per class (what a charset change remaps).
BACKBONE, BLSTM1, BLSTM2 = "backbone", "blstm1", "blstm2"
PARAM_GROUPS = (BACKBONE, BLSTM1, BLSTM2)
CLASSIFIER = f"{BLSTM2}/linear"


class GRCNN(nn.Module):
    """Images -> logits ``[B, frames, num_classes]`` (float32); 26 frames for 32x100 input.

    Call as ``model.apply({'params': p, 'batch_stats': s}, images, train=False)``;
    in training pass ``train=True, mutable=['batch_stats']``. Images are uint8
    (normalized here, on the device) or floats already in [-1, 1].

    Attributes:
      num_classes: output classes (CTC blank included).
      conv0_features, grcl_features, out_features: the backbone's widths (see ``Backbone``).
      hidden: the BLSTMs' hidden size per direction.
      dropout: in training, the fraction of the first and the second BLSTM's inputs zeroed
        (inverted dropout; needs a ``'dropout'`` rng); 0 (the default) leaves none out.
      guide_layers: > 0: the model also has an attention guide of that many decoder blocks
        (``models.guide``, width ``hidden``; its variables ``params['guide']``), which
        training runs on the backbone's frames when given ``guide_inputs``; 0 (the default):
        none. Reading never runs it.
      options: the GRCL settings, handed to the backbone as they are (see ``GRCLOptions``);
        their dtype is the whole model's compute dtype.
    """

    num_classes: int
    conv0_features: int = 64
    grcl_features: Sequence[int] = (64, 128, 256)
    out_features: int = 512
    hidden: int = 256
    dropout: float = 0.0
    guide_layers: int = 0
    options: GRCLOptions = GRCLOptions()

    def backbone(self, name: str | None = None) -> Backbone:
        """The ``Backbone`` this model runs (its variables are ``params['backbone']`` and
        ``batch_stats['backbone']``); unbound when called outside the model."""
        # Unnamed: a module of its own (no parent), not a submodule of this unbound one.
        where = {"name": name} if name else {"parent": None}
        return Backbone(self.conv0_features, tuple(self.grcl_features), self.out_features,
                        self.options, **where)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False,
                 backbone_train: bool | None = None, guide_inputs: jax.Array | None = None
                 ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """``backbone_train=False`` runs the backbone as in inference (BatchNorm on its running
        statistics, which stay as they are) while the rest trains: a frozen backbone.
        ``guide_inputs`` (int32 [B, N], ``text.losses.teacher_tokens``' inputs; a model with
        ``guide_layers`` > 0 only): returns the logits and the guide's logits [B, N, classes]."""
        dtype = self.options.dtype
        x = normalize_images(images, dtype)
        features = self.backbone(name=BACKBONE)(
            x, train if backbone_train is None else train and backbone_train)
        if features.shape[1] != 1:
            raise ValueError(
                f"the backbone leaves a feature map of height {features.shape[1]} for input "
                f"height {images.shape[1]}; the network needs input height 32")
        seq = features[:, 0]                                                 # [B, frames, C]
        guide = None
        if self.guide_layers and (guide_inputs is not None or self.is_initializing()):
            tokens = (guide_inputs if guide_inputs is not None
                      else jnp.zeros((images.shape[0], 1), jnp.int32))
            guide = AttentionGuide(self.num_classes, self.guide_layers, self.hidden,
                                   dtype=dtype, name=GUIDE)(seq, tokens)
        elif guide_inputs is not None:
            raise ValueError("guide_inputs given to a model without a guide (guide_layers=0)")
        drop = nn.Dropout(self.dropout, deterministic=not train)      # rate 0: the identity
        seq = BidirectionalLSTM(self.hidden, self.out_features, dtype, name=BLSTM1)(drop(seq))
        logits = BidirectionalLSTM(self.hidden, self.num_classes, dtype, name=BLSTM2)(drop(seq))
        logits = logits.astype(jnp.float32)
        return logits if guide_inputs is None else (logits, guide)
