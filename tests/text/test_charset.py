import numpy as np
import pytest

from grcnn_jax.text.charset import BLANK_ID, DEFAULT_CHARS, Charset, CharsetError


def test_default_is_the_papers_36_characters():
    cs = Charset()
    assert cs.chars == DEFAULT_CHARS and len(cs) == 36 and cs.num_classes == 37
    assert cs.encode("0az9") == [1, 11, 36, 10]
    assert BLANK_ID == 0


def test_round_trip_and_blanks_dropped():
    cs = Charset()
    assert cs.decode(cs.encode("hello42")) == "hello42"
    assert cs.decode([0, 18, 0, 15, 0]) == "he"


def test_unknown_character_is_named():
    cs = Charset()
    with pytest.raises(CharsetError, match=r"'H' at position 0 of 'Hi!'"):
        cs.encode("Hi!")
    assert cs.unknown_chars("Hi!!") == ["H", "!"]
    with pytest.raises(CharsetError, match="label id 99"):
        cs.decode([99])


def test_duplicate_and_empty_rejected():
    with pytest.raises(CharsetError, match="'a' appears twice"):
        Charset("abca")
    with pytest.raises(CharsetError, match="non-empty"):
        Charset("")


def test_from_file_both_layouts(tmp_path):
    one_line = tmp_path / "one.txt"
    one_line.write_text("abc\n", encoding="utf-8")
    per_line = tmp_path / "per.txt"
    per_line.write_text("x\n \né\n", encoding="utf-8")
    assert Charset.from_file(one_line).chars == "abc"
    assert Charset.from_spec(f"file:{per_line}").chars == "x é"
    assert Charset.from_spec("xyz") == Charset("xyz")
    bad = tmp_path / "bad.txt"
    bad.write_text("ab\ncd\n", encoding="utf-8")
    with pytest.raises(CharsetError, match="line 1"):
        Charset.from_file(bad)
    with pytest.raises(CharsetError, match="missing.txt"):
        Charset.from_file(tmp_path / "missing.txt")


def test_encode_batch_pads_with_paddings():
    labels, paddings = Charset().encode_batch(["ab", "", "c"], max_len=3)
    np.testing.assert_array_equal(labels, [[11, 12, 0], [0, 0, 0], [13, 0, 0]])
    np.testing.assert_array_equal(paddings, [[0, 0, 1], [1, 1, 1], [0, 1, 1]])
    assert labels.dtype == np.int32 and paddings.dtype == np.float32
    with pytest.raises(CharsetError, match="more than max_len=2"):
        Charset().encode_batch(["abc"], max_len=2)
