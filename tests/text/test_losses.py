"""The CTC wrapper against brute-force enumeration of all alignments."""

import itertools

import jax
import numpy as np
import pytest

from grcnn_jax.text.ctc_host import required_frames
from grcnn_jax.text.losses import ctc_loss


def collapse(path):
    out = []
    for i, c in enumerate(path):
        if c != 0 and (i == 0 or c != path[i - 1]):
            out.append(c)
    return out


def brute_force_nll(logits, label):
    log_probs = np.asarray(jax.nn.log_softmax(logits.astype(np.float64), axis=-1))
    frames, classes = log_probs.shape
    total = -np.inf
    for path in itertools.product(range(classes), repeat=frames):
        if collapse(path) == list(label):
            total = np.logaddexp(total, sum(log_probs[t, c] for t, c in enumerate(path)))
    return -total


@pytest.mark.parametrize("labels", [[[1, 2], [2, 2]], [[3], [1, 1, 2]]])
def test_matches_brute_force(labels):
    rng = np.random.default_rng(len(labels[1]))
    frames, classes, max_len = 5, 4, 3
    logits = rng.normal(size=(2, frames, classes)).astype(np.float32)
    ids = np.zeros((2, max_len), np.int32)
    pads = np.ones((2, max_len), np.float32)
    for b, lab in enumerate(labels):
        ids[b, :len(lab)] = lab
        pads[b, :len(lab)] = 0
    got = np.asarray(ctc_loss(logits, ids, pads))
    want = [brute_force_nll(logits[b], labels[b]) for b in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_required_frames():
    assert required_frames([]) == 0
    assert required_frames([1, 2, 3]) == 3
    assert required_frames([1, 1, 2, 2, 2]) == 8
