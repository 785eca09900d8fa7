"""CTC decoders: greedy (best path), lexicon (best CTC likelihood), prefix beam search.

All take the model's per-frame scores for a batch, ``[B, T, C]`` (T frames, C
classes, blank = 0), and return text.

- Greedy: argmax per frame, merge repeats, drop blanks (the paper's lexicon-free
  protocol). ``collapse`` / ``greedy_decode`` work on the argmax ids, computed on
  the device, so only ``[B, T]`` int32 crosses to the host.
- Lexicon: the lexicon word with the highest CTC likelihood
  ``log p(word | image) = log sum over its alignments`` (the seed's rule), exact
  and vectorized: every word of every image of a batch scored in one jitted call
  of ``optax.ctc_loss`` (``lexicon_log_likelihoods``), the logits repeated per
  candidate. ``encode_lexicons`` turns word lists into the padded id arrays.
- Prefix beam search (``ctc_host.prefix_beam_search``, ``ctc_host.beam_search_decode``):
  the standard CTC prefix beam search (Hannun et al. 2014, without a language model) on
  the host in numpy, log space. It keeps the ``beam_width`` prefixes of highest probability (summed
  over alignments); with a width at least the number of reachable prefixes it
  is exact. Width 1 usually, but not always, equals greedy: greedy follows the
  single best alignment, while the width-1 beam keeps the prefix whose *summed*
  alignments are most probable (e.g. frames ``a a`` then ``{blank .4, b .45,
  a .15}``: greedy reads ``ab``, the beam keeps ``a`` at .55). On confident
  frames (a trained model's) both agree.

``ctc_log_likelihood`` (numpy forward algorithm) gives the exact log
probability of one labelling: the confidence that ``recognize`` reports.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from grcnn_jax.text.charset import BLANK_ID, Charset
from grcnn_jax.text.ctc_host import NEG_INF, word_forms
from grcnn_jax.text.losses import ctc_loss

# Lexicon candidates per optax.ctc_loss call inside the one jitted call (``lax.map`` over the
# chunks; memory ~ B * chunk * T * C). Measured on 2 CPU cores, B = 100, K = 56, L = 24: all 56
# in one call 62 ms, chunks of 8 38 ms, chunks of 1 32 ms (cache-sized pieces win).
# Accelerators prefer few large kernels (see ``default_chunk``).
LEXICON_CHUNK = 1


# ----------------------------------------------------------------------------- greedy
def collapse_on_device(best_path: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``collapse`` as fixed-shape arrays, jittable: [B, T] ids -> (labels [B, T] int32,
    label_paddings [B, T] float32), labels left-aligned, optax's padding convention."""
    b, t = best_path.shape
    previous = jnp.pad(best_path[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
    keep = (best_path != BLANK_ID) & (best_path != previous)
    position = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, t)        # t: out of range, dropped
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, t))
    labels = jnp.zeros((b, t), jnp.int32).at[rows, position].set(best_path, mode="drop")
    lengths = keep.sum(axis=1)
    paddings = (jnp.arange(t)[None, :] >= lengths[:, None]).astype(jnp.float32)
    return labels, paddings


def greedy_log_likelihood(logits: jax.Array, best_path: jax.Array) -> jax.Array:
    """[B, T, C] logits, [B, T] argmax ids -> [B] log p(greedy text | image) (all alignments)."""
    labels, paddings = collapse_on_device(best_path)
    return -ctc_loss(logits, labels, paddings)


# ----------------------------------------------------------------------------- lexicon
@dataclasses.dataclass(frozen=True)
class EncodedLexicons:
    """Per-image candidate words as padded id arrays (see ``encode_lexicons``).

    Attributes:
      labels: int32 [B, K, L] charset ids, 0 beyond each word and for unused slots.
      paddings: float32 [B, K, L] 1.0 beyond each word (optax's convention).
      words: per image the candidate words, in lexicon order (``len <= K``): the
        word in slot k of image b is ``words[b][k]``; slots beyond are unused.
      skipped: the lexicon words dropped because they do not encode (characters
        outside the charset after the case policy) or need more frames than T.
    """

    labels: np.ndarray
    paddings: np.ndarray
    words: list[list[str]]
    skipped: list[str]


def bucket(n: int, chunk: int = LEXICON_CHUNK) -> int:
    """A padded size >= n from few distinct values (so few compilations): a power of two up
    to 8, then a multiple of 8; a multiple of ``chunk`` where it exceeds ``chunk``."""
    n = max(int(n), 1)
    size = 1 << (n - 1).bit_length() if n <= 8 else -(-n // 8) * 8
    if size > chunk and size % chunk:
        size = -(-n // chunk) * chunk
    return size


def encode_lexicons(lexicons: Sequence[Sequence[str] | None], charset: Charset, max_frames: int,
                    lowercase: bool = True, chunk: int = LEXICON_CHUNK,
                    cache: dict | None = None,
                    case_variants: bool = False) -> EncodedLexicons:
    """Word lists (one per image; None or empty: no lexicon) -> ``EncodedLexicons``.

    Words get the labels' policy: lowercased if ``lowercase`` (the loader's default
    ``unknown_chars='lower'``), then a word that still has characters outside the
    charset, or needs more than ``max_frames`` CTC frames, is skipped (listed in
    ``skipped``), never an error. Duplicates (after lowercasing) are kept once.
    K is padded by ``bucket(K, chunk)`` (``chunk`` as in ``lexicon_log_likelihoods``), L
    by ``bucket(L, 8)``. ``cache``: a dict the caller keeps to memoize word encodings
    across calls (same charset, ``max_frames``, ``lowercase`` and ``case_variants``).

    ``case_variants`` (for a model that writes both cases, whose lexicon match is
    case-insensitive): each word takes one slot per case form (as given, lower, UPPER,
    Capitalized; ``lowercase`` is then not applied), all named by the word as the lexicon
    spells it, so the best-scoring form picks the word.
    """
    words: list[list[str]] = []
    ids: list[list[list[int]]] = []
    skipped: list[str] = []
    for lexicon in lexicons:
        row_words, row_ids, seen = [], [], set()
        for word in lexicon or ():
            if cache is not None:
                forms = cache.get(word)
                if forms is None:
                    if len(cache) > 1_000_000:
                        cache.clear()
                    forms = cache[word] = word_forms(word, charset, max_frames, lowercase,
                                                     case_variants)
            else:
                forms = word_forms(word, charset, max_frames, lowercase, case_variants)
            if not forms:
                if word.strip():
                    skipped.append(word)
                continue
            for form, form_ids in forms:
                if form in seen:
                    continue
                seen.add(form)
                row_words.append(word.strip() if case_variants else form)
                row_ids.append(form_ids)
        words.append(row_words)
        ids.append(row_ids)
    k = bucket(max((len(r) for r in ids), default=1), chunk)
    length = bucket(max((len(w) for r in ids for w in r), default=1), chunk=8)
    labels = np.zeros((len(lexicons), k, length), np.int32)
    flat = [w for r in ids for w in r]
    if flat:                                              # one scatter, not one per word
        lengths = np.array([len(w) for w in flat])
        rows = np.repeat(np.repeat(np.arange(len(ids)), [len(r) for r in ids]), lengths)
        slots = np.repeat(np.concatenate([np.arange(len(r)) for r in ids]), lengths)
        positions = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        labels[rows, slots, positions] = np.concatenate(flat)
    paddings = (labels == 0).astype(np.float32)         # ids >= 1: 0 only beyond a word
    return EncodedLexicons(labels, paddings, words, skipped)


def pad_lexicons(encoded: EncodedLexicons, k: int, length: int) -> EncodedLexicons:
    """``encoded`` with its arrays padded to K = ``k`` candidates of L = ``length`` ids (e.g.
    to one shape across hosts); raises ValueError if they are larger already."""
    b, k0, l0 = encoded.labels.shape
    if k0 > k or l0 > length:
        raise ValueError(f"cannot pad lexicons of shape {(b, k0, l0)} to K={k}, L={length}")
    labels = np.zeros((b, k, length), np.int32)
    labels[:, :k0, :l0] = encoded.labels
    return EncodedLexicons(labels, (labels == 0).astype(np.float32), encoded.words,
                           encoded.skipped)


def lexicon_log_likelihoods(logits: jax.Array, labels: jax.Array, paddings: jax.Array,
                            chunk: int = LEXICON_CHUNK) -> jax.Array:
    """CTC log-likelihood of every candidate word: jittable, vectorized over the lexicon.

    Args:
      logits: [B, T, C] the model's outputs for B images.
      labels: [B, K, L] int32 candidate words per image (see ``encode_lexicons``).
      paddings: [B, K, L] float32, 1.0 beyond each word.
      chunk: candidates per ``optax.ctc_loss`` call when K > chunk (``lax.map`` over
        K / chunk chunks bounds the memory of the repeated logits to B * chunk * T * C).

    Returns:
      [B, K] float32 ``log p(word | image)``, summed over alignments. Unused slots
      score the empty word (all-blank path); mask them with ``EncodedLexicons.words``.
    """
    b, t, c = logits.shape
    k, length = labels.shape[1], labels.shape[2]

    def score(lab, pad):                                   # [B, k', L] -> [B, k']
        kk = lab.shape[1]
        repeated = jnp.broadcast_to(logits[:, None], (b, kk, t, c)).reshape(b * kk, t, c)
        nll = ctc_loss(repeated, lab.reshape(b * kk, length), pad.reshape(b * kk, length))
        return -nll.reshape(b, kk)

    if k <= chunk:
        return score(labels, paddings)
    if k % chunk:
        raise ValueError(f"K={k} candidates is not a multiple of chunk={chunk}; pad with bucket()")
    n = k // chunk
    split = lambda x: x.reshape(b, n, chunk, length).transpose(1, 0, 2, 3)  # noqa: E731
    out = jax.lax.map(lambda a: score(*a), (split(labels), split(paddings)))   # [n, B, chunk]
    return out.transpose(1, 0, 2).reshape(b, k)


def default_chunk() -> int:
    """``LEXICON_CHUNK`` on the CPU backend, 64 on accelerators (fewer, larger kernels)."""
    return LEXICON_CHUNK if jax.default_backend() == "cpu" else 64


def pick_words(scores: np.ndarray, words: Sequence[Sequence[str]]) -> list[tuple[str, float]]:
    """[B, K] scores and the candidate words -> per image (best word, its log-likelihood);
    ``('', -inf)`` for an image without candidates. Ties go to the earlier lexicon word."""
    out = []
    for row, candidates in zip(np.asarray(scores), words):
        if not candidates:
            out.append(("", NEG_INF))
            continue
        j = int(np.argmax(row[:len(candidates)]))
        out.append((candidates[j], float(row[j])))
    return out


# ----------------------------------------------------------------------------- beam search


