"""How a reading's letters are cased: the network's probabilities and how signs case words.

A reader that writes both cases decides each letter's case from its frames alone, and for
letters whose two cases look alike but for their size (c, o, s, u, v, w, x, z, ...) it is
often unsure: it reads 'oUt' or 'LONDoN'. Real words are cased in a few patterns. Of the
5,593 labels with two or more letters among the real training crops this package's reader
was trained on (the training splits of IIIT5K, SVT and ICDAR 2015, less the part kept for
validation), 3,164 are upper case, 1,459 title case ('Exit'), 879 lower case and 91 mixed
('iPad', 'McDonalds', 'CiTYLiNK'); those counts are ``PATTERN_COUNTS``.

``settle`` keeps a reading whose letters follow one of the three regular patterns as it is.
A mixed reading is compared with its lower, upper and title case forms by
log p(form | image) (summed over CTC alignments) + log P(form's pattern), and the best
kept: a reading the network is sure of stays mixed ('iPad', whose i and I differ in shape),
one it is unsure of takes the pattern ('oUt' -> 'out'). Only the case of letters changes,
never which letters are read. Every reader settles each reading before using it; where a
language model ranks an unsure image's framed views, it ranks the settled readings by
their own log p, which can change which view's reading is kept.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from grcnn_jax.text import ctc_host
from grcnn_jax.text.charset import Charset

PATTERN_COUNTS = {"upper": 3164, "title": 1459, "lower": 879, "mixed": 91}
_TOTAL = sum(PATTERN_COUNTS.values())
LOG_PRIOR = {k: math.log(v / _TOTAL) for k, v in PATTERN_COUNTS.items()}


def pattern(text: str) -> str | None:
    """'lower', 'upper', 'title' or 'mixed': how ``text``'s letters are cased (the other
    characters aside); None for fewer than two letters."""
    letters = "".join(c for c in text if c.isalpha())
    if len(letters) < 2:
        return None
    if letters.islower():
        return "lower"
    if letters.isupper():
        return "upper"
    if letters[0].isupper() and letters[1:].islower():
        return "title"
    return "mixed"


def title_case(text: str) -> str:
    """``text`` with its first letter upper case and the other letters lower case (the
    other characters as they are)."""
    out, first = [], True
    for c in text:
        if c.isalpha():
            out.append(c.upper() if first else c.lower())
            first = False
        else:
            out.append(c)
    return "".join(out)


def settle(scores: np.ndarray | Callable[[], np.ndarray], readings: Sequence[Sequence[int]], charset: Charset,
           log_p: Sequence[float] | None = None
           ) -> tuple[list[list[int]], list[float] | None]:
    """Each mixed-case reading replaced by its best-scoring case form (see the module doc).

    Args:
      scores: [N, T, C] logits or log-probabilities of the N images (normalized here, for
        the rows with a mixed reading only), or a function returning them, called only if
        some reading is mixed.
      readings: N label-id sequences.
      charset: the readings' alphabet; one that does not write both cases changes nothing.
      log_p: the readings' log p(reading | image), if the caller keeps them.

    Returns:
      (readings, log_p): the readings, those changed replaced, and ``log_p`` with the
      changed readings' log p (None if None was given).
    """
    readings = [list(ids) for ids in readings]
    log_p = None if log_p is None else [float(v) for v in log_p]
    if not ctc_host.writes_both_cases(charset):
        return readings, log_p
    rows, forms = [], []
    for i, ids in enumerate(readings):
        text = charset.decode(ids)
        if pattern(text) == "mixed":
            rows.append(i)
            forms.append([text, text.lower(), text.upper(), title_case(text)])
    if not rows:
        return readings, log_p
    per = len(forms[0])
    if callable(scores):
        scores = scores()
    log_probs = ctc_host.log_softmax(np.asarray(scores)[np.repeat(rows, per)])
    encoded = [charset.encode(f) for fs in forms for f in fs]
    likelihoods = ctc_host.ctc_log_likelihoods(log_probs, encoded).reshape(len(rows), per)
    prior = np.array([LOG_PRIOR[k] for k in ("mixed", "lower", "upper", "title")])
    best = np.argmax(likelihoods + prior, axis=1)
    for row, j, ll, fs in zip(rows, best.tolist(), likelihoods, forms):
        if j:
            readings[row] = charset.encode(fs[j])
            if log_p is not None:
                log_p[row] = float(ll[j])
    return readings, log_p
