"""The losses: CTC (optax's, wrapped once for the whole project) and the attention guide's
cross-entropy (training only; ``models.guide``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from grcnn_jax.text.charset import BLANK_ID


def ctc_loss(logits: jnp.ndarray, labels: jnp.ndarray, label_paddings: jnp.ndarray,
             logit_paddings: jnp.ndarray | None = None) -> jnp.ndarray:
    """Per-example CTC negative log-likelihood, in nats.

    Args:
      logits: [B, frames, classes] unnormalized scores (any float dtype; computed in float32).
      labels: [B, L] int32 label ids (blank = 0 is never a label).
      label_paddings: [B, L] 1.0 where a position is padding, 0.0 where it is a label.
      logit_paddings: [B, frames] 1.0 for padded frames; None means all frames are valid.

    Returns:
      [B] float32 losses. An example whose label cannot be aligned to the frames
      (fewer frames than ``required_frames``) gets a very large finite loss
      (optax's log-zero is -1e5), not inf.
    """
    logits = logits.astype(jnp.float32)
    if logit_paddings is None:
        logit_paddings = jnp.zeros(logits.shape[:2], jnp.float32)
    return optax.ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=BLANK_ID)


def teacher_tokens(labels: jax.Array, label_paddings: jax.Array) -> tuple[jax.Array, jax.Array,
                                                                          jax.Array]:
    """The decoder's inputs, targets and target mask for labels [B, L] (optax's padding).

    Returns int32 inputs [B, L+1] (the start token, then the label), int32 targets [B, L+1]
    (the label, then the end token) and float32 mask [B, L+1]: 1.0 at the label's positions
    and at its end token, 0.0 after.
    """
    keep = 1.0 - label_paddings.astype(jnp.float32)                              # [B, L]
    labels = jnp.where(keep > 0, labels, BLANK_ID).astype(jnp.int32)
    start = jnp.full((labels.shape[0], 1), BLANK_ID, jnp.int32)
    inputs = jnp.concatenate([start, labels], axis=1)
    targets = jnp.concatenate([labels, start], axis=1)
    mask = jnp.concatenate([jnp.ones_like(keep[:, :1]), keep], axis=1)
    return inputs, targets, mask


def guide_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-example cross-entropy [B] (nats, summed over the word's positions and its end,
    the units of the CTC loss) of the attention guide's logits [B, N, classes]
    (``models.guide``) against ``teacher_tokens``' targets and mask."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    return -jnp.sum(picked * mask, axis=1)
