"""Annotation parsers for the tfds benchmark builders (``tfds_builders``): the bytes of a
download's annotation files (IIIT5K .mat, SVT XML, IC03 XML and lexicon files, IC13
ground-truth text) -> ``Item`` (image path, text, lexicons, crop box) lists.
"""

from __future__ import annotations

import dataclasses
import html
import io
import re
from typing import Any
from xml.etree import ElementTree

import numpy as np

from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.tfds_downloads import decode_text, lexicon_words


# ---------------------------------------------------------------------------------------------
# Annotation parsers: bytes of the download's files -> (image path, text, lexicons) items.


@dataclasses.dataclass
class Item:
    """One word of a download: its image (a name in the tree, plus a crop box) and labels."""

    name: str                              # name of the image file in the tree
    text: str
    lexicon: list[str] = dataclasses.field(default_factory=list)
    lexicon_1k: list[str] = dataclasses.field(default_factory=list)
    box: tuple[int, int, int, int] | None = None   # x, y, width, height in pixels, to crop
    id: str = ""                           # defaults to name


def _mat_strings(value: Any) -> list[str]:
    """A MATLAB char array / cell array as loaded by scipy (squeezed) -> list of str."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, bytes):
        return [value.decode("utf-8", "replace")]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            return [str(v) for v in value.ravel() if str(v).strip()]
        out: list[str] = []
        for v in value.ravel():
            out += _mat_strings(v)
        return out
    if isinstance(value, (int, float, np.number)):
        return [str(value.item() if isinstance(value, np.number) else value)]
    return [str(value)]


def _mat_field(entry: Any, name: str, where: str, required: bool = True) -> Any:
    fields = {f.lower(): f for f in getattr(entry, "_fieldnames", [])}
    if name.lower() not in fields:
        if required:
            raise DataError(f"{where}: no field {name!r} (fields: {sorted(fields.values())})")
        return None
    return getattr(entry, fields[name.lower()])


def parse_iiit5k_mat(raw: bytes, variable: str, where: str) -> list[Item]:
    """IIIT5K ``testdata.mat`` / ``traindata.mat``: a 1xN struct array named ``testdata`` /
    ``traindata`` with fields ImgName ('test/1002_1.png'), GroundTruth, smallLexi (50 words),
    mediumLexi (1000 words); image paths relative to the .mat file's folder."""
    try:
        import scipy.io
    except ImportError:
        raise DataError("reading IIIT5K's .mat files needs scipy: pip install scipy") from None
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw), squeeze_me=True, struct_as_record=False)
    except Exception as e:  # noqa: BLE001 -- scipy raises many types for a bad file
        raise DataError(f"{where}: not a MATLAB (v5) file scipy can read: {e}") from None
    variables = [k for k in mat if not k.startswith("__")]
    key = next((k for k in variables if k.lower() == variable.lower()), None)
    if key is None and len(variables) == 1:
        key = variables[0]
    if key is None:
        raise DataError(f"{where}: no variable {variable!r} (variables: {variables})")
    items = []
    for k, entry in enumerate(np.atleast_1d(mat[key]).ravel()):
        at = f"{where}: {key}({k + 1})"
        names = _mat_strings(_mat_field(entry, "ImgName", at))
        texts = _mat_strings(_mat_field(entry, "GroundTruth", at))
        if len(names) != 1:
            raise DataError(f"{at}: ImgName is {names!r}, not one path")
        items.append(Item(name=names[0], text="".join(texts),
                           lexicon=_mat_strings(_mat_field(entry, "smallLexi", at, False)),
                           lexicon_1k=_mat_strings(_mat_field(entry, "mediumLexi", at, False))))
    return items


def _child(el: ElementTree.Element, tag: str) -> ElementTree.Element | None:
    return next((c for c in el if c.tag.lower() == tag.lower()), None)


def _attr(el: ElementTree.Element, name: str) -> str | None:
    return next((v for k, v in el.attrib.items() if k.lower() == name.lower()), None)


def _xml(raw: bytes, where: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(raw)
    except ElementTree.ParseError as e:
        raise DataError(f"{where}: not well-formed XML: {e}") from None


def parse_svt_xml(raw: bytes, where: str) -> list[Item]:
    """SVT ``test.xml`` / ``train.xml``: ``<tagset><image>`` elements with ``<imageName>``
    (img/14_03.jpg, relative to the xml), ``<lex>`` (comma-separated words) and
    ``<taggedRectangles><taggedRectangle x= y= width= height=><tag>WORD</tag>``."""
    items = []
    for image in _xml(raw, where).iter():
        if image.tag.lower() != "image":
            continue
        name_el = _child(image, "imageName")
        if name_el is None or not (name_el.text or "").strip():
            raise DataError(f"{where}: an <image> without <imageName>")
        name = name_el.text.strip()
        lex_el = _child(image, "lex")
        lexicon = lexicon_words(lex_el.text if lex_el is not None else "")
        rects = _child(image, "taggedRectangles")
        for k, rect in enumerate([] if rects is None else list(rects)):
            try:
                x, y, w, h = (round(float(_attr(rect, a))) for a in ("x", "y", "width", "height"))
            except (TypeError, ValueError):
                raise DataError(f"{where}: {name}: box {k} has attributes {rect.attrib}, not "
                                "numbers x, y, width, height") from None
            tag = _child(rect, "tag")
            items.append(Item(name=name, text=(tag.text or "") if tag is not None else "",
                               lexicon=lexicon, box=(x, y, w, h), id=f"{name}#{k}"))
    return items


_IC03_IMAGE = re.compile(r"<image\s+([^>]*?)/?>", re.IGNORECASE | re.DOTALL)
_XML_ATTR = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def parse_ic03_xml(raw: bytes, where: str) -> list[Item]:
    """IC03 ``word.xml``: ``<imagelist><image file="word/1/1.jpg" tag="Tiredness"/>``, paths
    relative to the xml. Files that are not well-formed XML (stray '&', Latin-1 bytes) are
    read with a forgiving pattern instead."""
    try:
        root = ElementTree.fromstring(raw)
        pairs = [(_attr(el, "file"), _attr(el, "tag")) for el in root.iter()
                 if el.tag.lower() == "image"]
    except ElementTree.ParseError:
        pairs = []
        for m in _IC03_IMAGE.finditer(decode_text(raw)):
            attrs = {k.lower(): (a if a is not None else b)
                     for k, a, b in _XML_ATTR.findall(m.group(1))}
            pairs.append((attrs.get("file"), attrs.get("tag")))
        pairs = [(f and html.unescape(f), t and html.unescape(t)) for f, t in pairs]
    items = []
    for k, (file, tag) in enumerate(pairs):
        if not file:
            raise DataError(f"{where}: <image> number {k + 1} has no file attribute")
        items.append(Item(name=file, text=tag or ""))
    return items


def read_lexicon_file(raw: bytes, items: list[Item], where: str) -> None:
    """Attaches lexicons from a file to ``items``, in one of two layouts:

    * every line ``IMAGE_PATH<TAB>w1,w2,...`` -- matched by path (or its unique suffix);
    * one line ``w1,w2,...`` per item, in the annotation file's order (the seed's
      lexicon_50.txt); the line count must match.
    """
    lines = decode_text(raw).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and all("\t" in ln for ln in lines if ln.strip()):
        by_path = {}
        for ln in lines:
            if ln.strip():
                path, _, words = ln.partition("\t")
                by_path[path.strip().replace("\\", "/").lstrip("./")] = lexicon_words(words)
        for item in items:
            name = item.name.replace("\\", "/").lstrip("./")
            match = by_path.get(name)
            if match is None:
                ends = [p for p in by_path if name.endswith("/" + p) or p.endswith("/" + name)]
                if len(ends) != 1:
                    raise DataError(f"{where}: no lexicon line for image {item.name!r}")
                match = by_path[ends[0]]
            item.lexicon = match
        return
    if len(lines) != len(items):
        raise DataError(f"{where} has {len(lines)} lines but the annotations list "
                        f"{len(items)} images (one comma-separated lexicon per image, same order; "
                        "or lines 'IMAGE_PATH<TAB>w1,w2,...')")
    for item, ln in zip(items, lines):
        item.lexicon = lexicon_words(ln)


_IC13_LINE = re.compile(r'^\s*(?P<file>[^,]+?)\s*,\s*"(?P<text>.*)"\s*$')


def parse_ic13_gt(raw: bytes, where: str) -> list[Item]:
    """IC13 Task 3 ground truth: lines ``word_1.png, "Tiredness"``; a quote or backslash inside
    the text is backslash-escaped. Unquoted ``file, text`` lines are accepted too."""
    items = []
    for lineno, line in enumerate(decode_text(raw).splitlines(), 1):
        if not line.strip():
            continue
        m = _IC13_LINE.match(line)
        if m:
            text = re.sub(r"\\(.)", r"\1", m.group("text"))
            items.append(Item(name=m.group("file"), text=text))
            continue
        file, sep, text = line.partition(",")
        if not sep or not file.strip():
            raise DataError(f"{where}:{lineno}: expected 'word_N.png, \"TEXT\"', got {line!r}")
        items.append(Item(name=file.strip(), text=text.strip()))
    return items
