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
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from grcnn_jax.models.conv import conv2d_same

Dtype = Any
Array = jax.Array

# He (Kaiming) normal: the layers feed ReLUs. PyTorch's default differs (kaiming
# uniform with a = sqrt(5)); initialization is not part of the paper's equations.
default_kernel_init = nn.initializers.he_normal()


def conv2d(x: Array, kernel: Array, dtype: Dtype) -> Array:
    """Stride-1 'SAME' convolution, NHWC x HWIO -> NHWC, computed in ``dtype``, no bias.

    Through ``conv2d_same``, whose backward pass stays fast inside the scan on CPU.
    """
    return conv2d_same(x.astype(dtype), kernel.astype(dtype))


def batch_norm(train: bool, momentum: float, epsilon: float, dtype: Dtype,
               name: str) -> nn.BatchNorm:
    """A BatchNorm over N, H, W with the project's settings.

    ``momentum`` is Flax's (the running statistics keep ``momentum`` of their old
    value; PyTorch's 0.1 is Flax's 0.9). Variance is the exact two-pass one, not
    E[x^2] - E[x]^2, which loses precision on post-ReLU activations.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                        dtype=dtype, use_fast_variance=False, name=name)


class GRCLIteration(nn.Module):
    """One recurrent iteration: ``x(t-1) -> x(t)``, with this iteration's own BatchNorms.

    Used as the body of ``nn.scan`` in ``GRCL``; call signature is ``(carry, *broadcast)``.
    """

    features: int
    gated: bool = True
    share: bool = True
    train: bool = False
    dtype: Dtype = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    kernel_init: Callable = default_kernel_init

    @nn.compact
    def __call__(self, x: Array, feedforward: tuple[Array, Array | None],
                 shared_kernels: tuple[Array, Array | None] | None) -> tuple[Array, None]:
        """x: [B,H,W,C] state; feedforward: (wf*u, wgf*u or None), each [B,H,W,C]."""
        wf_u, wgf_u = feedforward
        c = self.features
        if self.share:
            wr, wgr = shared_kernels
        else:
            wr = self.param("wr", self.kernel_init, (3, 3, c, c))
            wgr = self.param("wgr", self.kernel_init, (1, 1, c, c)) if self.gated else None
        bn = functools.partial(batch_norm, self.train, self.bn_momentum, self.bn_epsilon, self.dtype)

        recurrent = bn("bn_rx")(conv2d(x, wr, self.dtype))
        if self.gated:
            gate = nn.sigmoid(bn("bn_gfu")(wgf_u) + bn("bn_grx")(conv2d(x, wgr, self.dtype)))
            recurrent = bn("bn_gx")(recurrent * gate)
        x = nn.relu(bn("bn_fu")(wf_u) + recurrent)
        return x, None


class GRCL(nn.Module):
    """Gated recurrent convolution layer: [B,H,W,Cin] -> [B,H,W,features], spatial size kept.

    Attributes:
      features: output channels C.
      T: recurrent iterations (0 = plain conv + BN + ReLU).
      gated: False gives the ungated RCL ablation.
      share: recurrent kernels shared across iterations (True) or one set per iteration.
      dtype: compute dtype; params stay float32.
      scan_unroll: iterations per while-loop trip (1 = rolled; T = fully unrolled).
      remat: recompute each iteration's activations in the backward pass (saves memory).
    """

    features: int
    T: int = 5
    gated: bool = True
    share: bool = True
    dtype: Dtype = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    scan_unroll: int = 1
    remat: bool = False
    kernel_init: Callable = default_kernel_init

    @nn.compact
    def __call__(self, u: Array, train: bool = False) -> Array:
        if self.T < 0:
            raise ValueError(f"GRCL needs T >= 0 iterations, got T={self.T}")
        cin, c = u.shape[-1], self.features
        bn = functools.partial(batch_norm, train, self.bn_momentum, self.bn_epsilon, self.dtype)

        wf_u = conv2d(u, self.param("wf", self.kernel_init, (3, 3, cin, c)), self.dtype)
        x = nn.relu(bn("bn_init")(wf_u))
        if self.T == 0:
            return x

        wgf_u = (conv2d(u, self.param("wgf", self.kernel_init, (1, 1, cin, c)), self.dtype)
                 if self.gated else None)
        shared = None
        if self.share:
            shared = (self.param("wr", self.kernel_init, (3, 3, c, c)),
                      self.param("wgr", self.kernel_init, (1, 1, c, c)) if self.gated else None)

        body = nn.remat(GRCLIteration) if self.remat else GRCLIteration
        iterations = nn.scan(
            body,
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast),
            length=self.T,
            unroll=self.scan_unroll,
        )(features=c, gated=self.gated, share=self.share, train=train, dtype=self.dtype,
          bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
          kernel_init=self.kernel_init, name="iterations")
        x, _ = iterations(x, (wf_u, wgf_u), shared)
        return x
