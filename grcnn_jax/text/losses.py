"""CTC loss (optax's), wrapped once for the whole project."""

from __future__ import annotations

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
