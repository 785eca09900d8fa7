"""The gated recurrent convolution layer (GRCL) of Wang & Hu (NIPS 2017), and its ablations.

With the feed-forward input ``u`` held fixed over the T iterations::

    x(0) = ReLU(BN_init(wf * u))
    G(t) = sigmoid(BN_gfu[t](wgf * u) + BN_grx[t](wgr * x(t-1)))           wgf, wgr: 1x1
    x(t) = ReLU(BN_fu[t](wf * u) + BN_gx[t](BN_rx[t](wr * x(t-1)) * G(t)))  wf, wr: 3x3

The RCL ablation (``gated=False``) is ``x(t) = ReLU(BN_fu[t](wf * u) + BN_rx[t](wr * x(t-1)))``;
``T = 0`` leaves ``x(0)``, a plain conv + BN + ReLU (the feed-forward CNN ablation).

The T iterations run under Flax's lifted ``nn.scan`` (one ``lax.scan``, a single
while loop in the compiled program, so compile time does not grow with T). Every
iteration has its own BatchNorms: their params and running statistics are stacked
along a leading iteration axis of length T. The recurrent kernels ``wr``/``wgr``
are shared by all iterations (``share=True``, declared here and passed into the
scanned body as broadcast inputs), or one set per iteration (``share=False``,
declared inside the body and so stacked along the iteration axis too).

Parameter tree of one GRCL (C = features, Cin = input channels)::

    wf [3,3,Cin,C]   wgf [1,1,Cin,C]   wr [3,3,C,C]   wgr [1,1,C,C]   (wr/wgr: share=True)
    bn_init/{scale,bias} [C]                          (batch_stats: bn_init/{mean,var})
    iterations/bn_{fu,gfu,grx,rx,gx}/{scale,bias} [T,C]
    iterations/wr [T,3,3,C,C], iterations/wgr [T,1,1,C,C]                  (share=False)

Layouts are NHWC activations and HWIO kernels.

The settings (T, gated, share, dtype, BatchNorm, scan, remat, convolutions) are one frozen
``GRCLOptions``, built once (``create_model`` builds it from the config's ``model`` section)
and handed down GRCNN -> Backbone -> GRCL -> GRCLIteration as it is. A new option is a field
of ``GRCLOptions`` and its use where it matters; config entries of the same name reach it.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from grcnn_jax.models import conv as convs
from grcnn_jax.models.batchnorm import BatchNorm, moments

Dtype = Any
Array = jax.Array

REMATS = ("none", "convs", "full")
CONV_OUTPUT = "grcl_conv_output"     # checkpoint_name of the recurrent convolutions' outputs

# He (Kaiming) normal: the layers feed ReLUs. PyTorch's default differs (kaiming
# uniform with a = sqrt(5)); initialization is not part of the paper's equations.
default_kernel_init = nn.initializers.he_normal()


def _non_negative_int(name: str, value: Any) -> None:
    try:
        ok = operator.index(value) >= 0 and not isinstance(value, bool)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"GRCLOptions.{name}={value!r}: needs an integer >= 0")


@dataclasses.dataclass(frozen=True)
class GRCLOptions:
    """The settings of the GRCLs (and the dtype and BatchNorm settings of the whole model).

    Frozen and hashable: Flax hashes module attributes, and this is one. Checked when built
    (a bad value raises ValueError naming the field). Change one with
    ``dataclasses.replace(options, T=3)``.
    """

    T: int = 5
    """Recurrent iterations per GRCL (0 = plain conv + BN + ReLU, the feed-forward CNN)."""

    gated: bool = True
    """False gives the ungated RCL ablation."""

    share: bool = True
    """Recurrent kernels ``wr``/``wgr`` shared across iterations (True) or one set per
    iteration (False)."""

    dtype: Dtype = jnp.float32
    """Compute dtype (a jnp dtype); params stay float32."""

    bn_momentum: float = 0.9
    """BatchNorm momentum, Flax's convention: the running statistics keep this much of their
    old value (PyTorch's 0.1 is 0.9 here)."""

    bn_epsilon: float = 1e-5
    """BatchNorm epsilon."""

    scan_unroll: int = 0
    """Iterations per while-loop trip (1 = rolled; T = fully unrolled); 0 (the default): rolled
    in training, unrolled in eval mode."""

    remat: str = "convs"
    """What the backward pass recomputes of each iteration, in training: 'convs' (the default)
    keeps the recurrent convolutions' outputs and recomputes the BatchNorms, gate and ReLU (less
    memory traffic: faster on a CPU than keeping them all), 'full' recomputes everything (least
    memory), 'none' keeps what autodiff keeps."""

    conv_impl: str = "auto"
    """How the 3x3 convolutions run: 'winograd', 'xla' or 'auto' (Winograd on the CPU; see
    ``models/conv.py``). The same function either way. ``GRCL`` hands its iterations the
    resolved one."""

    kernel_init: Callable = default_kernel_init
    """Initializer of the GRCL kernels ``wf``, ``wgf``, ``wr``, ``wgr``."""

    def __post_init__(self):
        _non_negative_int("T", self.T)
        _non_negative_int("scan_unroll", self.scan_unroll)
        if self.remat not in REMATS:
            raise ValueError(f"GRCLOptions.remat={self.remat!r}: choose one of {REMATS}")
        if self.conv_impl not in ("auto", *convs.IMPLS):
            raise ValueError(f"GRCLOptions.conv_impl={self.conv_impl!r}: choose auto, "
                             f"{' or '.join(convs.IMPLS)}")


def batch_norm(train: bool, momentum: float, epsilon: float, dtype: Dtype,
               name: str) -> BatchNorm:
    """A BatchNorm over N, H, W with the project's settings (see ``models/batchnorm.py``).

    ``momentum`` is Flax's (the running statistics keep ``momentum`` of their old
    value; PyTorch's 0.1 is Flax's 0.9). Variance is the exact two-pass one, not
    E[x^2] - E[x]^2, which loses precision on post-ReLU activations.
    """
    return BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                     dtype=dtype, name=name)


class GRCLIteration(nn.Module):
    """One recurrent iteration: ``x(t-1) -> x(t)``, with this iteration's own BatchNorms.

    Used as the body of ``nn.scan`` in ``GRCL``; call signature is ``(carry, *broadcast)``.
    ``options.conv_impl`` is a resolved one ('winograd' or 'xla', see ``models/conv.py``);
    ``options.T``, ``scan_unroll`` and ``remat`` are the enclosing ``GRCL``'s business.
    """

    features: int
    train: bool = False
    options: GRCLOptions = GRCLOptions(conv_impl="xla")

    @nn.compact
    def __call__(self, x: Array, feedforward: tuple[Array, Array | None],
                 feedforward_stats: tuple[Any, Any] | None,
                 shared_kernels: tuple[Array, Array | None] | None) -> tuple[Array, None]:
        """x: [B,H,W,C] state; feedforward: (wf*u, wgf*u or None), each [B,H,W,C];
        feedforward_stats: their batch ``moments`` in training (None in eval mode);
        shared_kernels: (wr prepared for ``conv_impl``, wgr) if ``share``."""
        o = self.options
        wf_u, wgf_u = feedforward
        fu_stats, gfu_stats = feedforward_stats or (None, None)
        c = self.features
        if o.share:
            wr, wgr = shared_kernels
        else:
            wr = self.param("wr", o.kernel_init, (3, 3, c, c))
            wr = convs.prepare_kernel(wr.astype(o.dtype), o.conv_impl)
            wgr = self.param("wgr", o.kernel_init, (1, 1, c, c)) if o.gated else None
        bn = functools.partial(batch_norm, self.train, o.bn_momentum, o.bn_epsilon, o.dtype)

        r = checkpoint_name(convs.conv(x, wr, o.conv_impl), CONV_OUTPUT)
        recurrent = bn("bn_rx")(r)
        if o.gated:
            q = checkpoint_name(convs.conv1x1(x, wgr, o.dtype), CONV_OUTPUT)
            gate = nn.sigmoid(bn("bn_gfu")(wgf_u, gfu_stats) + bn("bn_grx")(q))
            recurrent = bn("bn_gx")(recurrent * gate)
        x = nn.relu(bn("bn_fu")(wf_u, fu_stats) + recurrent)
        return x, None


class GRCL(nn.Module):
    """Gated recurrent convolution layer: [B,H,W,Cin] -> [B,H,W,features], spatial size kept.

    Attributes:
      features: output channels C.
      options: T, gated, share, dtype, BatchNorm, scan, remat and conv settings (see
        ``GRCLOptions``).
    """

    features: int
    options: GRCLOptions = GRCLOptions()

    @nn.compact
    def __call__(self, u: Array, train: bool = False) -> Array:
        o = self.options
        impl = convs.resolve_impl(o.conv_impl)
        cin, c = u.shape[-1], self.features
        bn = functools.partial(batch_norm, train, o.bn_momentum, o.bn_epsilon, o.dtype)

        wf_u = convs.conv3x3(u, self.param("wf", o.kernel_init, (3, 3, cin, c)), impl, o.dtype)
        fu_stats = moments(wf_u) if train else None
        x = nn.relu(bn("bn_init")(wf_u, fu_stats))
        if o.T == 0:
            return x

        wgf_u = gfu_stats = None
        if o.gated:
            wgf_u = convs.conv1x1(u, self.param("wgf", o.kernel_init, (1, 1, cin, c)), o.dtype)
            gfu_stats = moments(wgf_u) if train else None
        shared = None
        if o.share:
            wr = self.param("wr", o.kernel_init, (3, 3, c, c))
            shared = (convs.prepare_kernel(wr.astype(o.dtype), impl),
                      self.param("wgr", o.kernel_init, (1, 1, c, c)) if o.gated else None)

        if o.remat == "none" or not train:
            body = GRCLIteration
        elif o.remat == "full":
            body = nn.remat(GRCLIteration)
        else:   # keep each iteration's convolution outputs, recompute the elementwise rest
            body = nn.remat(GRCLIteration, policy=jax.checkpoint_policies.save_only_these_names(
                CONV_OUTPUT))
        # Unrolled in eval mode: without a loop, every iteration's BatchNorm constants are
        # static slices, which XLA:CPU folds into its elementwise loops (measured: the paper
        # model's inference 302 vs 396 ms per batch of 32; compile 2 s longer). Training stays a rolled loop.
        unroll = o.scan_unroll or (1 if train else o.T)
        iterations = nn.scan(
            body,
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
            length=o.T,
            unroll=unroll,
        )(features=c, train=train, options=dataclasses.replace(o, conv_impl=impl),
          name="iterations")
        stats = (fu_stats, gfu_stats) if train else None
        x, _ = iterations(x, (wf_u, wgf_u), stats, shared)
        return x
