"""CTC on the host, in numpy alone: what reading a model's logits needs without jax.

Greedy decoding (``collapse``, ``greedy_decode``), the exact log-likelihood of a labelling
(``ctc_log_likelihood``; ``ctc_log_likelihoods`` for a batch: the confidence ``recognize``
reports), the most probable alignment of a labelling (``best_alignment``: where each
character lies), the standard CTC prefix beam search (``prefix_beam_search``: Hannun et al. 2014; a
language model fused in where given, ``char_lm``), the frames a labelling needs, and the
forms in which lexicon words are scored (``word_forms``). ``grcnn_jax.text.decode``
builds the device-side decoders on these; ``grcnn_jax.inference.onnx_reader`` reads with them.
Logits are ``[B, T, C]`` (or ``[T, C]`` for one image): T frames, C classes, blank = 0.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable, Sequence

import numpy as np

from grcnn_jax.text.charset import BLANK_ID, Charset

NEG_INF = -math.inf


def required_frames(ids: Sequence[int]) -> int:
    """The fewest frames CTC needs to emit ``ids``: one per label plus a blank between repeats."""
    repeats = sum(1 for a, b in zip(ids, ids[1:]) if a == b)
    return len(ids) + repeats


def collapse(best_path: np.ndarray) -> list[list[int]]:
    """[B, frames] argmax ids -> per example the label ids (repeats merged, blanks dropped)."""
    best_path = np.asarray(best_path)
    previous = np.pad(best_path[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
    keep = (best_path != BLANK_ID) & (best_path != previous)
    return [row[k].tolist() for row, k in zip(best_path, keep)]


def greedy_decode(best_path: np.ndarray, charset: Charset) -> list[str]:
    """[B, frames] argmax ids -> texts."""
    return [charset.decode(ids) for ids in collapse(best_path)]



def encode_word(word: str, charset: Charset, max_frames: int, lowercase: bool
                ) -> tuple[str, list[int]] | None:
    """``word`` (stripped, lowercased if ``lowercase``) and its ids, or None where it has
    characters outside the charset or needs more than ``max_frames`` CTC frames."""
    w = word.strip()
    if lowercase:
        w = w.lower()
    if not w or charset.unknown_chars(w):
        return None
    ids = charset.encode(w)
    return (w, ids) if required_frames(ids) <= max_frames else None


def writes_both_cases(charset: Charset) -> bool:
    """Whether a model of ``charset`` tells lower from upper case: its lexicon words are then
    scored in their case forms (``encode_lexicons``'s ``case_variants``)."""
    return charset.chars != charset.chars.lower() and charset.chars != charset.chars.upper()


def word_forms(word: str, charset: Charset, max_frames: int, lowercase: bool,
               case_variants: bool) -> list[tuple[str, list[int]]]:
    """The forms of ``word`` to score and their ids: the word (lowercased if ``lowercase``),
    or with ``case_variants`` the word as given, lower, UPPER and Capitalized; a form that
    has characters outside the charset or needs more than ``max_frames`` frames is left
    out."""
    w = word.strip()
    forms = [w]
    if case_variants:
        forms = list(dict.fromkeys([w, w.lower(), w.upper(), w[:1].upper() + w[1:].lower()]))
    encoded = (encode_word(f, charset, max_frames, lowercase and not case_variants)
               for f in forms if f)
    return [e for e in encoded if e is not None]


def lexicon_forms(lexicon: Sequence[str], charset: Charset, max_frames: int, lowercase: bool
                  ) -> list[tuple[str, list[int]]]:
    """(answer, ids) for every scored form of every lexicon word, in order: for a model that
    writes both cases the answer is the word as given (its case forms all score for it),
    else the form scored. Raises ValueError if no word fits the charset and the frames."""
    variants = writes_both_cases(charset)
    out = []
    for word in lexicon:
        for form, ids in word_forms(word, charset, max_frames, lowercase, variants):
            out.append((word.strip() if variants else form, ids))
    if not out:
        raise ValueError("no lexicon word fits the charset")
    return out



def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numpy log-softmax over the last axis (float64)."""
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))



def ctc_log_likelihood(log_probs: np.ndarray, ids: Sequence[int]) -> float:
    """log p(ids | frames) summed over all CTC alignments (numpy forward algorithm).

    Args:
      log_probs: [T, C] per-frame log-probabilities, blank = 0.
      ids: the labelling (no blanks). -inf if it cannot be aligned to T frames.
    """
    return float(ctc_log_likelihoods(np.asarray(log_probs)[None], [ids])[0])


_ROWS = 128          # ctc_log_likelihoods' rows per block


def ctc_log_likelihoods(log_probs: np.ndarray, labellings: Sequence[Sequence[int]]
                        ) -> np.ndarray:
    """[B] log p(labellings[b] | frames of b), each summed over all its CTC alignments: the
    forward algorithm over the whole batch at once (one numpy step per frame).

    Args:
      log_probs: [B, T, C] per-frame log-probabilities, blank = 0.
      labellings: B labellings (label ids, no blanks; empty allowed). -inf where one cannot
        be aligned to T frames.

    Returns:
      float64 [B].
    """
    log_probs = np.asarray(log_probs, np.float64)
    if log_probs.ndim != 3 or len(labellings) != log_probs.shape[0]:
        raise ValueError(f"log_probs must be [B, T, C] with one labelling per row, got shape "
                         f"{log_probs.shape} and {len(labellings)} labellings")
    batch, frames = log_probs.shape[:2]
    if batch > _ROWS:                   # in blocks: the temporaries are [rows, T, states]
        return np.concatenate([ctc_log_likelihoods(log_probs[i:i + _ROWS],
                                                   labellings[i:i + _ROWS])
                               for i in range(0, batch, _ROWS)])
    if batch == 0:
        return np.zeros(0)
    lengths = np.array([2 * len(ids) + 1 for ids in labellings])    # blank, label, ..., blank
    states = int(lengths.max())
    ext = np.full((batch, states), BLANK_ID, np.int64)
    for b, ids in enumerate(labellings):
        ext[b, 1:lengths[b]:2] = np.asarray(ids, np.int64).reshape(-1)
    # May skip from s-2 to s: a label that differs from the label two positions back.
    skip = np.zeros((batch, states), bool)
    skip[:, 2:] = (ext[:, 2:] != BLANK_ID) & (ext[:, 2:] != ext[:, :-2])
    # [B, T, S]: each state's label's log p per frame; -inf past a labelling's end, so that
    # the padding's states never reach a real one (they only feed states further on).
    emit = np.take_along_axis(log_probs, np.broadcast_to(ext[:, None, :],
                                                         (batch, frames, states)), axis=2)
    emit = np.where((np.arange(states) < lengths[:, None])[:, None, :], emit, -np.inf)
    alpha = np.full((batch, states), -np.inf)
    alpha[:, :2] = emit[:, 0, :2]
    none = np.full((batch, 2), -np.inf)
    for t in range(1, frames):
        one = np.concatenate([none[:, :1], alpha[:, :-1]], axis=1)
        two = np.where(skip, np.concatenate([none, alpha[:, :-2]], axis=1)[:, :states], -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, one), two) + emit[:, t]
    rows = np.arange(batch)
    last = alpha[rows, lengths - 1]
    before = np.where(lengths > 1, alpha[rows, np.maximum(lengths - 2, 0)], -np.inf)
    return np.logaddexp(last, before)


def logits_log_likelihoods(logits: np.ndarray, labellings: Sequence[Sequence[int]]
                           ) -> np.ndarray:
    """``ctc_log_likelihoods`` of [B, T, C] logits (unnormalized): their log-softmax taken a
    block of rows at a time, so that the float64 copies stay small."""
    return np.concatenate([np.zeros(0)] + [
        ctc_log_likelihoods(log_softmax(logits[i:i + _ROWS]), labellings[i:i + _ROWS])
        for i in range(0, len(logits), _ROWS)])


def best_alignment(log_probs: np.ndarray, ids: Sequence[int]) -> np.ndarray | None:
    """The most probable single CTC alignment of ``ids`` (Viterbi), as int [T]: for each
    frame the position in ``ids`` it emits, or -1 for a blank; None where ``ids`` (not
    empty) cannot be aligned to the T frames.

    Args:
      log_probs: [T, C] per-frame log-probabilities, blank = 0.
      ids: the labelling (no blanks).
    """
    log_probs = np.asarray(log_probs, np.float64)
    t_len, n = len(log_probs), len(ids)
    if n == 0 or required_frames(ids) > t_len:
        return None
    ext = np.full(2 * n + 1, BLANK_ID, np.int64)            # blank, id0, blank, id1, ... blank
    ext[1::2] = ids
    s_len = len(ext)
    # A state may be entered from itself, the one before, or (a label that differs from the
    # label two back) skipping the blank between them.
    skip = np.zeros(s_len, bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    score = np.full(s_len, -np.inf)
    score[:2] = log_probs[0, ext[:2]]
    back = np.zeros((t_len, s_len), np.int64)
    states = np.arange(s_len)
    for t in range(1, t_len):
        stay = score
        step = np.concatenate([[-np.inf], score[:-1]])
        jump = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        options = np.stack([stay, step, jump])
        choice = options.argmax(0)
        back[t] = states - choice
        score = options.max(0) + log_probs[t, ext]
    state = s_len - 1 if score[-1] >= score[-2] else s_len - 2
    path = np.empty(t_len, np.int64)
    for t in range(t_len - 1, -1, -1):
        path[t] = state
        state = back[t, state]
    return np.where(path % 2 == 1, path // 2, -1)


def best_view(log_probs: np.ndarray) -> int:
    """[V, T, C] log-probabilities of V views of one image -> the index of the view whose
    greedy reading is most probable (log p summed over its alignments; the first on ties)."""
    return ranked_view(log_probs, collapse(np.asarray(log_probs).argmax(-1)))


def view_scores(log_probs: np.ndarray, readings: Sequence[Sequence[int]],
                rank: Callable[[Sequence[int], float], float] | None = None) -> list[float]:
    """[V, T, C] log-probabilities of V views of one image and each view's reading -> V
    scores: ``rank(ids, log p(ids | view))`` (a language model's ``LmDecoder.rank``), or
    without ``rank`` log p itself."""
    scores = ctc_log_likelihoods(log_probs, readings).tolist()
    if rank is not None:
        scores = [rank(ids, s) for ids, s in zip(readings, scores)]
    return scores


def ranked_view(log_probs: np.ndarray, readings: Sequence[Sequence[int]],
                rank: Callable[[Sequence[int], float], float] | None = None) -> int:
    """The index of the reading ranked first by ``view_scores`` (the first on ties)."""
    return int(np.argmax(view_scores(log_probs, readings, rank)))


# An unbent view's reading (``preprocess.unbent_views``) replaces the reading so far only where
# it scores more than this higher (nats) and has at least as many letters and digits: arcs
# laid over a straight word cut or squeeze its ends, and the search finds the shorter words
# they leave plausible. Chosen on real_val and its bent copy (docs/accuracy.md).
UNBEND_MARGIN = 1.0


def kept_unbent(so_far: tuple[str, float], unbent: Sequence[tuple[str, float]]) -> int | None:
    """(text, score) of an image's reading so far and of its unbent views' readings (scores
    as ``view_scores``'s) -> the index of the unbent reading that replaces it, or None."""
    def letters(text: str) -> int:
        return sum(c.isalnum() for c in text)

    fit = [k for k, (text, _) in enumerate(unbent) if letters(text) >= letters(so_far[0])]
    if not fit:
        return None
    k = max(fit, key=lambda j: unbent[j][1])                        # the first of ties
    return k if unbent[k][1] > so_far[1] + UNBEND_MARGIN else None


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


def prefix_beam_search(log_probs: np.ndarray, beam_width: int,
                       class_threshold: float | None = None, fusion=None
                       ) -> list[tuple[tuple[int, ...], float]]:
    """Standard CTC prefix beam search over one example, optionally fused with a language
    model.

    Args:
      log_probs: [T, C] per-frame log-probabilities (log-softmax), blank = 0.
      beam_width: prefixes kept after each frame (>= 1).
      class_threshold: skip extensions by classes with ``log_probs[t, c]`` below this
        (natural log; e.g. ``log(1e-4)``) -- a speed-up that changes nothing on
        confident frames; None considers every class.
      fusion: None, or a language model to rank prefixes with (``char_lm.LmDecoder``):
        ``start`` (its state before any label), ``extend(state, label) -> (state, score)``
        and ``finish(state) -> score``, scores in nats added to the CTC log-probability.

    Returns:
      The final beam: (label ids, log p(labelling | image)) pairs, best first (with
      ``fusion``: by log p + the language model's score; the log p returned is CTC's alone).
      A labelling's log p sums its alignments that survived the pruning (exact when nothing
      was pruned).
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    log_probs = np.asarray(log_probs, np.float64)
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must be [T, C], got shape {log_probs.shape}")
    # prefix -> [log p(prefix, path ends in blank), log p(prefix, path ends in its last
    # label), language model state, language model score]
    start = fusion.start if fusion is not None else None
    beams: dict[tuple[int, ...], list] = {(): [0.0, NEG_INF, start, 0.0]}
    tried = log_probs >= class_threshold if class_threshold is not None \
        else np.ones(log_probs.shape, bool)
    tried[:, BLANK_ID] = False
    add = _logaddexp

    def ranked(kv):
        return add(kv[1][0], kv[1][1]) + kv[1][3]

    rows, cols = np.nonzero(tried)
    per_frame: list[list[int]] = [[] for _ in range(len(log_probs))]
    for t, c in zip(rows.tolist(), cols.tolist()):
        per_frame[t].append(c)
    for frame, candidates in zip(log_probs.tolist(), per_frame):
        blank = frame[BLANK_ID]
        if not candidates:
            # Only blanks and repeats: every prefix stays itself, none merges, none is new
            # (what the general step below computes, without its bookkeeping).
            beams = {prefix: [add(pb, pnb) + blank,
                              pnb + frame[prefix[-1]] if prefix else NEG_INF, state, lm]
                     for prefix, (pb, pnb, state, lm) in beams.items()}
            continue
        nxt: dict[tuple[int, ...], list] = {}
        for prefix, (pb, pnb, state, lm) in beams.items():
            total = add(pb, pnb)
            entry = nxt.get(prefix)
            if entry is None:
                entry = nxt[prefix] = [NEG_INF, NEG_INF, state, lm]
            entry[0] = add(entry[0], total + blank)                # a blank: same prefix
            last = prefix[-1] if prefix else None
            if last is not None:                                   # repeat merged: same prefix
                entry[1] = add(entry[1], pnb + frame[last])
            for c in candidates:
                # A repeated label extends the prefix only after a blank.
                p = (pb if c == last else total) + frame[c]
                longer = prefix + (c,)
                e = nxt.get(longer)
                if e is None:
                    if fusion is None:
                        nxt[longer] = [NEG_INF, p, None, 0.0]
                    else:
                        s, score = fusion.extend(state, c)
                        nxt[longer] = [NEG_INF, p, s, lm + score]
                else:
                    e[1] = add(e[1], p)
        beams = dict(heapq.nlargest(beam_width, nxt.items(), key=ranked)) \
            if len(nxt) > beam_width else nxt
    final = [(p, add(v[0], v[1]), v[3] + (fusion.finish(v[2]) if fusion else 0.0))
             for p, v in beams.items()]
    final.sort(key=lambda x: x[1] + x[2], reverse=True)
    return [(p, log_p) for p, log_p, _ in final]


# Classes below this log-probability in a frame are not tried as extensions: the beam
# search's speed-up, which changes nothing on a trained model's confident frames.
BEAM_CLASS_THRESHOLD = math.log(1e-4)


def beam_search_decode(logits: np.ndarray, charset: Charset, beam_width: int,
                       class_threshold: float | None = BEAM_CLASS_THRESHOLD
                       ) -> list[tuple[str, float]]:
    """[B, T, C] logits -> per example (best text, its beam log-probability)."""
    log_probs = log_softmax(logits)
    out = []
    for row in log_probs:
        ids, score = prefix_beam_search(row, beam_width, class_threshold)[0]
        out.append((charset.decode(ids), score))
    return out
