"""CTC decoders against brute force: every alignment of a few frames over 3-4 classes."""

import itertools
import math

import jax
import numpy as np
import pytest

from grcnn_jax.text import ctc_host
from grcnn_jax.text import decode
from grcnn_jax.text.charset import Charset
from grcnn_jax.text.ctc_host import required_frames
from grcnn_jax.text.losses import ctc_loss

CHARSET = Charset("abc")            # classes: blank, a, b, c


def labelling_log_probs(log_probs: np.ndarray) -> dict[tuple, float]:
    """{labelling: log p(labelling)} by enumerating all C**T alignments of [T, C] log_probs."""
    t, c = log_probs.shape
    paths = np.array(list(itertools.product(range(c), repeat=t)))            # [C**T, T]
    path_lp = log_probs[np.arange(t), paths].sum(axis=1)
    out: dict[tuple, float] = {}
    for ids, lp in zip(ctc_host.collapse(paths), path_lp):
        key = tuple(ids)
        out[key] = float(np.logaddexp(out.get(key, -np.inf), lp))
    return out


def random_log_probs(rng, t, c, sharpness=1.5):
    return ctc_host.log_softmax(rng.normal(size=(t, c)) * sharpness)


def encode(word):
    return tuple(CHARSET.encode(word))


def test_brute_force_is_a_distribution():
    lp = random_log_probs(np.random.default_rng(0), 5, 4)
    total = np.logaddexp.reduce(list(labelling_log_probs(lp).values()))
    assert abs(total) < 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_forward_algorithm_and_optax_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    lp = random_log_probs(rng, 6, 4)
    exact = labelling_log_probs(lp)
    labellings = sorted(exact, key=exact.get, reverse=True)[:12] + [(1, 1, 1, 1)]
    for ids in labellings:
        want = exact.get(ids, -np.inf)
        got = ctc_host.ctc_log_likelihood(lp, ids)
        if want == -np.inf:
            assert got == -np.inf            # 'aaaa' needs 7 frames
        else:
            assert got == pytest.approx(want, abs=1e-9)
    ids = labellings[0]
    labels, paddings = np.zeros((1, 6), np.int32), np.ones((1, 6), np.float32)
    labels[0, :len(ids)], paddings[0, :len(ids)] = ids, 0.0
    nll = float(ctc_loss(lp[None].astype(np.float32), labels, paddings)[0])
    assert -nll == pytest.approx(exact[ids], abs=1e-4)


def test_batched_forward_algorithm_equals_brute_force():
    """One batch of labellings of different lengths (the empty one, one that needs more
    frames than there are) against the brute force, row by row."""
    rng = np.random.default_rng(7)
    lps = np.stack([random_log_probs(rng, 6, 4) for _ in range(5)])
    exact = [labelling_log_probs(lp) for lp in lps]
    labellings = [(), (1,), (2, 2), (1, 1, 1, 1), max(exact[4], key=exact[4].get)]
    got = ctc_host.ctc_log_likelihoods(lps, labellings)
    assert got.shape == (5,)
    for row, ids in enumerate(labellings):
        want = exact[row].get(ids, -np.inf)
        if want == -np.inf:
            assert got[row] == -np.inf
        else:
            assert got[row] == pytest.approx(want, abs=1e-9)
            assert got[row] == pytest.approx(ctc_host.ctc_log_likelihood(lps[row], ids),
                                             abs=1e-12)
    assert ctc_host.ctc_log_likelihoods(np.zeros((0, 6, 4)), []).shape == (0,)
    many = ctc_host.ctc_log_likelihoods(np.tile(lps, (60, 1, 1)), labellings * 60)  # blocks
    np.testing.assert_array_equal(many, np.tile(got, 60))
    with pytest.raises(ValueError, match="one labelling per row"):
        ctc_host.ctc_log_likelihoods(lps, labellings[:2])


def lexicon_case(seed, b=3, t=6, words_per_image=6):
    """Random logits for b images and random lexicons over 'abc' (some words too long)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, t, 4)).astype(np.float32) * 2
    lexicons = []
    for _ in range(b):
        words = {"".join(rng.choice(list("abc"), size=rng.integers(1, 5)))
                 for _ in range(words_per_image)}
        lexicons.append(sorted(words) + ["aaaa"])          # 'aaaa' needs 7 > 6 frames: skipped
    return logits, lexicons


@pytest.mark.parametrize("seed", range(5))
def test_lexicon_choice_is_the_brute_force_argmax(seed):
    logits, lexicons = lexicon_case(seed)
    enc = decode.encode_lexicons(lexicons, CHARSET, max_frames=logits.shape[1])
    assert enc.skipped.count("aaaa") == len(lexicons)
    assert all(required_frames(encode(w)) > 6 for w in enc.skipped)     # e.g. 'cccc' too
    scores = np.asarray(jax.jit(decode.lexicon_log_likelihoods)(logits, enc.labels, enc.paddings))
    picks = decode.pick_words(scores, enc.words)
    for b, (word, score) in enumerate(picks):
        exact = labelling_log_probs(ctc_host.log_softmax(logits[b]))
        truth = {w: exact.get(encode(w), -np.inf) for w in enc.words[b]}
        # Every candidate's score is its exact log-likelihood, not just the winner's.
        for k, w in enumerate(enc.words[b]):
            assert scores[b, k] == pytest.approx(truth[w], abs=1e-4)
        assert word == max(truth, key=truth.get)
        assert score == pytest.approx(truth[word], abs=1e-4)


def test_lexicon_scores_in_chunks_equal_one_call():
    logits, lexicons = lexicon_case(7, b=2, words_per_image=12)
    enc = decode.encode_lexicons(lexicons, CHARSET, max_frames=6)
    k = enc.labels.shape[1]
    assert k == 16 and all(len(w) > 4 for w in enc.words)
    whole = decode.lexicon_log_likelihoods(logits, enc.labels, enc.paddings)
    chunked = jax.jit(decode.lexicon_log_likelihoods, static_argnames="chunk")(
        logits, enc.labels, enc.paddings, chunk=4)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=1e-6)
    with pytest.raises(ValueError, match="multiple of chunk"):
        decode.lexicon_log_likelihoods(logits, enc.labels[:, :6], enc.paddings[:, :6], chunk=4)


def test_lexicon_words_follow_the_label_policy_and_never_crash():
    charset = Charset("0123456789abcdefghijklmnopqrstuvwxyz")
    lexicons = [["Hotel", "EXIT", "it's", "café", "", "hotel", " park "], None, [],
                ["x" * 30, "ok"]]
    enc = decode.encode_lexicons(lexicons, charset, max_frames=26)
    assert enc.words == [["hotel", "exit", "park"], [], [], ["ok"]]
    assert enc.skipped == ["it's", "café", "x" * 30]
    assert enc.labels.shape == (4, 4, 8) and enc.paddings.shape == (4, 4, 8)
    assert charset.decode(enc.labels[0, 1][enc.paddings[0, 1] == 0]) == "exit"
    assert enc.paddings[1].min() == 1.0                          # no candidates: all padding
    # Without the 'lower' policy, words with capitals are not in a lowercase charset.
    strict = decode.encode_lexicons([["Hotel", "park"]], charset, max_frames=26, lowercase=False)
    assert strict.words == [["park"]] and strict.skipped == ["Hotel"]
    assert decode.pick_words(np.zeros((2, 4)), [[], ["a", "b"]]) == [("", -math.inf),
                                                                     ("a", 0.0)]


def test_bucket_sizes():
    sizes = (0, 1, 2, 3, 8, 9, 50, 64, 65, 1000)
    assert [decode.bucket(n, chunk=8) for n in sizes] == [1, 1, 2, 4, 8, 16, 56, 64, 72, 1000]
    assert [decode.bucket(n, chunk=64) for n in sizes] == [1, 1, 2, 4, 8, 16, 56, 64, 128, 1024]
    assert [decode.bucket(n, chunk=4) for n in (3, 5, 6)] == [4, 8, 8]
    assert [decode.bucket(n, chunk=1) for n in sizes] == [1, 1, 2, 4, 8, 16, 56, 64, 72, 1000]
    assert [decode.bucket(n, chunk=3) for n in (2, 5)] == [2, 6]


@pytest.mark.parametrize("seed", range(6))
def test_wide_beam_finds_the_most_likely_labelling(seed):
    rng = np.random.default_rng(seed)
    t, c = (5, 4) if seed % 2 else (7, 3)
    lp = random_log_probs(rng, t, c, sharpness=1.0)
    exact = labelling_log_probs(lp)
    best = max(exact, key=exact.get)
    beam = ctc_host.prefix_beam_search(lp, beam_width=len(exact))
    assert beam[0][0] == best
    assert beam[0][1] == pytest.approx(exact[best], abs=1e-9)
    # With no pruning every reachable labelling is in the beam with its exact probability.
    assert {p: pytest.approx(s, abs=1e-9) for p, s in beam} == exact


def test_beam_differs_from_best_path_where_the_sum_over_alignments_wins():
    """Greedy follows the single best alignment; the beam scores labellings. Here the best
    path reads 'b' but 'a' is more likely in total, and a modest beam finds it."""
    lp = np.log(np.array([[0.45, 0.35, 0.2], [0.45, 0.35, 0.2], [0.45, 0.35, 0.2]]))
    exact = labelling_log_probs(lp)
    assert ctc_host.greedy_decode(lp.argmax(-1)[None], Charset("ab")) == [""]
    assert max(exact, key=exact.get) == (1,)
    assert ctc_host.prefix_beam_search(lp, beam_width=4)[0][0] == (1,)


def test_beam_width_one_is_greedy_on_confident_frames():
    rng = np.random.default_rng(0)
    charset = Charset("abcdefghij")
    for _ in range(200):
        t = int(rng.integers(3, 20))
        path = rng.integers(0, charset.num_classes, size=t)
        logits = rng.normal(size=(t, charset.num_classes))
        logits[np.arange(t), path] += 6.0             # argmax prob >~ 0.9, like a trained model
        [(text, score)] = ctc_host.beam_search_decode(logits[None], charset, beam_width=1,
                                                    class_threshold=None)
        assert text == ctc_host.greedy_decode(path[None], charset)[0]
        lp = ctc_host.log_softmax(logits)
        assert score <= ctc_host.ctc_log_likelihood(lp, charset.encode(text)) + 1e-9


def test_beam_width_one_can_differ_from_greedy_on_flat_frames():
    """The documented exception (decode module doc): prefix merging keeps 'a'."""
    lp = np.log(np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.4, 0.15, 0.45]]) + 1e-12)
    charset = Charset("ab")
    assert ctc_host.greedy_decode(lp.argmax(-1)[None], charset) == ["ab"]
    assert ctc_host.prefix_beam_search(lp, beam_width=1)[0][0] == (1,)
    assert ctc_host.prefix_beam_search(lp, beam_width=3)[0][0] == (1,)   # and it is the likelier


def test_greedy_on_device_matches_host():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(8, 7, 4)).astype(np.float32) * 3
    best = logits.argmax(-1).astype(np.int32)
    labels, paddings = jax.jit(decode.collapse_on_device)(best)
    for row, lab, pad in zip(ctc_host.collapse(best), np.asarray(labels), np.asarray(paddings)):
        assert lab[pad == 0].tolist() == row and (lab[pad == 1] == 0).all()
    ll = np.asarray(jax.jit(decode.greedy_log_likelihood)(logits, best))
    for b in range(8):
        exact = labelling_log_probs(ctc_host.log_softmax(logits[b]))
        assert ll[b] == pytest.approx(exact[tuple(ctc_host.collapse(best[b:b + 1])[0])], abs=1e-4)


def test_pad_lexicons_keeps_the_scores():
    logits, lexicons = lexicon_case(11, b=2)
    enc = decode.encode_lexicons(lexicons, CHARSET, max_frames=6)
    padded = decode.pad_lexicons(enc, 16, 8)
    assert padded.labels.shape == (2, 16, 8) and padded.words == enc.words
    a = decode.pick_words(np.asarray(decode.lexicon_log_likelihoods(logits, enc.labels,
                                                                    enc.paddings)), enc.words)
    b = decode.pick_words(np.asarray(decode.lexicon_log_likelihoods(
        logits, padded.labels, padded.paddings)), padded.words)
    assert [w for w, _ in a] == [w for w, _ in b]
    np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-5)
    with pytest.raises(ValueError, match="cannot pad"):
        decode.pad_lexicons(enc, 1, 8)


def test_a_cased_charset_scores_every_case_form_of_a_lexicon_word():
    from grcnn_jax.config.defaults import CASED_CHARSET

    cased = Charset(CASED_CHARSET)
    assert ctc_host.writes_both_cases(cased) and not ctc_host.writes_both_cases(Charset())
    enc = decode.encode_lexicons([["Hotel", "park", "EXIT"]], cased, max_frames=26,
                                 case_variants=True)
    forms = ["".join(cased.chars[i - 1] for i in row if i) for row in enc.labels[0]]
    assert forms[:9] == ["Hotel", "hotel", "HOTEL", "park", "PARK", "Park", "EXIT", "exit",
                         "Exit"]
    assert enc.words[0] == ["Hotel"] * 3 + ["park"] * 3 + ["EXIT"] * 3
    # The best form picks the word, as the lexicon spells it.
    scores = np.full((1, enc.labels.shape[1]), -50.0)
    scores[0, 4] = -1.0                                   # 'PARK' read
    assert decode.pick_words(scores, enc.words)[0][0] == "park"


@pytest.mark.parametrize("seed", range(4))
def test_best_alignment_is_the_brute_force_best_path(seed):
    rng = np.random.default_rng(seed)
    lp = random_log_probs(rng, 6, 4)
    for word in ("a", "ab", "aa", "cab", "abba"):
        ids = encode(word)
        paths = np.array(list(itertools.product(range(4), repeat=6)))
        mine = [p for p, c in zip(paths, ctc_host.collapse(paths)) if tuple(c) == ids]
        scores = [lp[np.arange(6), p].sum() for p in mine]
        best = mine[int(np.argmax(scores))]
        got = ctc_host.best_alignment(lp, ids)
        # Positions in the word, -1 for blanks: the brute-force path's, re-derived.
        expect, k, previous = [], -1, 0
        for c in best:
            if c != 0 and (c != previous or expect[-1] == -1):
                k += 1
            expect.append(k if c != 0 else -1)
            previous = c
        assert got.tolist() == expect, word
        assert np.isclose(lp[np.arange(6), np.where(got >= 0, np.array(ids)[got], 0)].sum(),
                          max(scores))


def test_best_alignment_refuses_what_does_not_fit():
    lp = random_log_probs(np.random.default_rng(0), 3, 4)
    assert ctc_host.best_alignment(lp, encode("aa")) is not None      # a, blank, a
    assert ctc_host.best_alignment(lp, encode("aaa")) is None        # needs 5 frames
    assert ctc_host.best_alignment(lp, ()) is None
