"""English words for the synthetic generator: SCOWL's American English list, vendored.

The list is ``assets/american-english.gz``: the file ``/usr/share/dict/american-english``
of Debian's ``wamerican`` package (version 2020.12.07-2, SCOWL size 50: 104,334 entries
including proper names, possessives and accented loan words), gzipped unchanged. Its
licence is SCOWL's permissive notice ("Permission to use, copy, modify, distribute and
sell these word lists ... is hereby granted without fee, provided that the above copyright
notice appears in all copies"), reproduced with the notices of its sources in
``assets/american-english.COPYRIGHT``.

Why this list rather than the ``english-words`` pip package (MIT code): that package
ships two lists, ``web2`` (Webster's Second International of 1934: 235k mostly archaic
and obscure words) and ``gcide`` (data of the GNU Collaborative International Dictionary
of English, GPL). SCOWL-50 is a modern, common vocabulary of about the size of the
90k-word Hunspell lexicon Synth90k was rendered from, under a permissive licence, and
small (260 kB gzipped), so it costs no download and no extra dependency.

After filtering for the default charset (lowercased, letters and digits only, so
possessives and accented words drop out, and duplicates like 'Bill'/'bill' merge)
about 73k words remain.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from grcnn_jax.text.charset import DEFAULT_CHARS

WORD_LIST = "assets/american-english.gz"


@functools.lru_cache(maxsize=1)
def _raw_words() -> tuple[str, ...]:
    data = resources.files("grcnn_jax.data").joinpath(WORD_LIST).read_bytes()
    return tuple(gzip.decompress(data).decode("utf-8").split())


def alphabet(chars: str = DEFAULT_CHARS) -> str:
    """The characters words and random strings are drawn from: sorted, lowercase, alphanumeric.

    These are the letters and digits ``c`` of ``chars`` with ``c == c.lower()``, plus the
    lowercase form of any uppercase letter of ``chars`` (so 'A-Z' alone still yields 'a-z').
    """
    out = {c.lower() for c in chars if c.isalnum() and len(c.lower()) == 1}
    return "".join(sorted(out))


@functools.lru_cache(maxsize=8)
def load_words(chars: str = DEFAULT_CHARS, max_chars: int | None = None) -> tuple[str, ...]:
    """The vendored English words, lowercased, that ``alphabet(chars)`` can spell.

    Args:
      chars: the target charset's characters (e.g. ``Charset().chars``).
      max_chars: drop words longer than this (None: keep all).
    Returns:
      Sorted, distinct, lowercase words (a tuple, cached per process).
    """
    allowed = set(alphabet(chars))
    words = {w.lower() for w in _raw_words()}
    return tuple(sorted(w for w in words
                        if w and set(w) <= allowed and (max_chars is None or len(w) <= max_chars)))
