"""A few optax steps on one fixed batch drive the CTC loss down (the model can learn)."""

import jax
import numpy as np
import optax

from conftest import load_config
from grcnn_jax.text.charset import Charset
from grcnn_jax.text.losses import ctc_loss
from grcnn_jax.models import create_model


def test_ctc_loss_goes_down_on_a_fixed_batch():
    charset = Charset()
    model = create_model(load_config("tiny").model, charset.num_classes)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 100), dtype=np.uint8)
    labels, label_paddings = charset.encode_batch(["grcl", "ctc", "2017", "nips"], max_len=6)
    variables = jax.jit(model.init)(jax.random.key(0), images)
    tx = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(3e-3))
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    @jax.jit
    def step(state):
        params, batch_stats, opt_state = state

        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                          train=True, mutable=["batch_stats"])
            return ctc_loss(logits, labels, label_paddings).mean(), updates["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    losses = []
    for _ in range(40):
        state, loss = step(state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
