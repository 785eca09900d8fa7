"""tensorflow-datasets builders (ArrayRecord files) for the scene-text benchmarks and a frozen
synthetic set, and ``TfdsSource``, the random-access source over a prepared one.

Datasets (builder names; benchmarks are downloaded by hand, see each class's
``MANUAL_DOWNLOAD_INSTRUCTIONS``)::

    iiit5k        IIIT5K-Word V3.0                      splits test, train
    svt           Street View Text (svt1), word crops   splits test, train
    ic03          ICDAR 2003 robust word recognition    splits test, train (if downloaded)
    ic13          ICDAR 2013 Challenge 2 Task 3         splits test, train (if downloaded)
    grcnn_synth   ``SynthWords`` samples, frozen        split test; configs 10k, 100k (or any size)

Every example has (as ``tfds.data_source`` returns them, NumPy, no TensorFlow)::

    id          bytes, UTF-8   where it came from: the image's path in the download (plus
                               '#k' for the k-th word box of an SVT image), or the synthetic key
    image       bytes          the encoded image: the download's own file where the benchmark
                               ships word crops (IIIT5K, IC03, IC13: JPEG/PNG as they are), PNG
                               for crops cut here (SVT) and for synthetic images
    text        bytes, UTF-8   the transcription exactly as annotated (case, punctuation and
                               all; the benchmark protocol's filtering is the evaluation's job)
    lexicon     list[bytes]    the image's lexicon words; empty where the benchmark has none
    lexicon_1k  list[bytes]    iiit5k only: the medium (1000-word) lexicon

Images are a plain bytes feature, not ``tfds.features.Image``: that feature encodes arrays
and decodes on read with TensorFlow or a bare ``np.asarray(PIL image)`` (palette PNGs come
back as indices, channel counts must match the declared shape), while the loader decodes
bytes itself. Examples are stored in generation order (``disable_shuffling``): index i of
a split is the i-th annotation of the download, or ``SynthWords(...)[i]``.

Build and read::

    python -m grcnn_jax.data.tfds_builders build iiit5k --manual_dir ~/downloads/iiit5k
    python -m grcnn_jax.data.tfds_builders build grcnn_synth --size 10000 --data_dir DIR
    TfdsSource("iiit5k", split="test", data_dir=DIR)     # or the config spec 'tfds:iiit5k/test'
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import io
import logging
import os
import re
import sys
import tarfile
import zipfile
from typing import Any, Callable, Iterator, Sequence
from xml.etree import ElementTree

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from grcnn_jax.data.errors import DataError

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")

# ---------------------------------------------------------------------------------------------
# Reading a download: an extracted folder or an archive, the same way.


def _clean(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return "__MACOSX/" in name or base.startswith("._") or base in (".DS_Store", "Thumbs.db")


class _Tree:
    """A read-only file tree: a folder, a .zip, or a .tar / .tar.gz / .tgz.

    ``names`` are '/'-separated paths relative to the tree's top (archive members as
    stored, so usually under the archive's own top folder). A tar archive is read into
    memory in one pass (gzip streams cannot seek); a zip or folder is read per file.
    """

    def __init__(self, path: str):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._data: dict[str, bytes] | None = None
        if os.path.isdir(path):
            names = []
            for d, dirs, files in os.walk(path):
                dirs.sort()
                rel = os.path.relpath(d, path).replace(os.sep, "/")
                names += [f if rel == "." else f"{rel}/{f}" for f in sorted(files)]
        elif path.lower().endswith(".zip"):
            try:
                self._zip = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as e:
                raise DataError(f"cannot read zip archive {path!r}: {e}") from None
            names = [n for n in self._zip.namelist() if not n.endswith("/")]
        else:
            self._data = {}
            try:
                with tarfile.open(path) as tar:
                    for member in tar:
                        if member.isfile() and not _is_junk(member.name):
                            self._data[_clean(member.name)] = tar.extractfile(member).read()
            except (OSError, tarfile.TarError, EOFError) as e:
                raise DataError(f"cannot read tar archive {path!r}: {e}") from None
            names = list(self._data)
        self.names = [n for n in names if not _is_junk(n)]
        self._names = set(self.names)
        self._lower = {}
        for n in self.names:
            self._lower.setdefault(n.rsplit("/", 1)[-1].lower(), []).append(n)

    def read(self, name: str) -> bytes:
        try:
            if self._data is not None:
                return self._data[name]
            if self._zip is not None:
                return self._zip.read(name)
            with open(os.path.join(self.path, name), "rb") as f:
                return f.read()
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read {name!r} in {self.path!r}: {e}") from None

    def with_basename(self, basename: str) -> list[str]:
        """Names whose last component is ``basename`` (case-insensitive)."""
        return self._lower.get(basename.lower(), [])

    def resolve(self, root: str, rel: str, where: str) -> str:
        """The name of ``rel`` (a path from an annotation file in folder ``root``).

        Tried in turn: ``root/rel``; ``rel`` itself; the only name ending in '/rel'; the only
        name with rel's file name (preferring names under ``root``). DataError names ``where``.
        """
        rel = _clean(rel.strip())
        joined = f"{root}/{rel}" if root else rel
        for candidate in (joined, rel):
            if candidate in self._names:
                return candidate
        same_base = self.with_basename(rel.rsplit("/", 1)[-1])
        for pool in ([n for n in same_base if n.lower().endswith("/" + rel.lower())
                      or n.lower() == rel.lower()],
                     [n for n in same_base if not root or n.startswith(root + "/")],
                     same_base):
            if len(pool) == 1:
                return pool[0]
            if len(pool) > 1:
                raise DataError(f"{where}: image {rel!r} is ambiguous in {self.path!r}: "
                                f"{pool[:3]}")
        raise DataError(f"{where}: image {rel!r} not found in {self.path!r} (nor a file named "
                        f"{rel.rsplit('/', 1)[-1]!r})")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __repr__(self) -> str:
        return self.path


def _dirname(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _archives_in(folder: str) -> list[str]:
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, e) for e in entries
            if e.lower().endswith(ARCHIVE_SUFFIXES) and os.path.isfile(os.path.join(folder, e))]


def _find(folder: str, anchor: str, prefer: Sequence[str] = (),
          skip: Callable[[str], bool] = lambda name: False) -> tuple[_Tree, str] | None:
    """The tree holding a file named ``anchor`` (case-insensitive), and its name there.

    Looks in the extracted folder tree of ``folder`` first (but not at names that ``skip``),
    then in the archives directly inside it, those whose file names start with one of
    ``prefer`` first.
    """
    if not os.path.isdir(folder):
        return None
    tree = _Tree(folder)
    hits = sorted((n for n in tree.with_basename(anchor) if not skip(n)),
                  key=lambda n: (n.count("/"), n))
    if hits:
        return tree, hits[0]
    archives = _archives_in(folder)
    archives.sort(key=lambda p: not os.path.basename(p).lower().startswith(
        tuple(s.lower() for s in prefer)) if prefer else False)
    for path in archives:
        tree = _Tree(path)
        hits = sorted(tree.with_basename(anchor), key=lambda n: (n.count("/"), n))
        if hits:
            return tree, hits[0]
        tree.close()
    return None


def _missing(builder: "_Benchmark", manual_dir: str, what: str) -> DataError:
    return DataError(
        f"{builder.name}: {what} not found in the manual download folder {manual_dir!r}.\n\n"
        f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")


def _decode_text(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else Latin-1: annotation files of the era are either."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _png(image: Image.Image) -> bytes:
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _split_words(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


# ---------------------------------------------------------------------------------------------
# Annotation parsers: bytes of the download's files -> (image path, text, lexicons) items.


@dataclasses.dataclass
class _Item:
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


def parse_iiit5k_mat(raw: bytes, variable: str, where: str) -> list[_Item]:
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
        items.append(_Item(name=names[0], text="".join(texts),
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


def parse_svt_xml(raw: bytes, where: str) -> list[_Item]:
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
        lexicon = _split_words(lex_el.text if lex_el is not None else "")
        rects = _child(image, "taggedRectangles")
        for k, rect in enumerate([] if rects is None else list(rects)):
            try:
                x, y, w, h = (round(float(_attr(rect, a))) for a in ("x", "y", "width", "height"))
            except (TypeError, ValueError):
                raise DataError(f"{where}: {name}: box {k} has attributes {rect.attrib}, not "
                                "numbers x, y, width, height") from None
            tag = _child(rect, "tag")
            items.append(_Item(name=name, text=(tag.text or "") if tag is not None else "",
                               lexicon=lexicon, box=(x, y, w, h), id=f"{name}#{k}"))
    return items


_IC03_IMAGE = re.compile(r"<image\s+([^>]*?)/?>", re.IGNORECASE | re.DOTALL)
_XML_ATTR = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def parse_ic03_xml(raw: bytes, where: str) -> list[_Item]:
    """IC03 ``word.xml``: ``<imagelist><image file="word/1/1.jpg" tag="Tiredness"/>``, paths
    relative to the xml. Files that are not well-formed XML (stray '&', Latin-1 bytes) are
    read with a forgiving pattern instead."""
    try:
        root = ElementTree.fromstring(raw)
        pairs = [(_attr(el, "file"), _attr(el, "tag")) for el in root.iter()
                 if el.tag.lower() == "image"]
    except ElementTree.ParseError:
        pairs = []
        for m in _IC03_IMAGE.finditer(_decode_text(raw)):
            attrs = {k.lower(): (a if a is not None else b)
                     for k, a, b in _XML_ATTR.findall(m.group(1))}
            pairs.append((attrs.get("file"), attrs.get("tag")))
        pairs = [(f and html.unescape(f), t and html.unescape(t)) for f, t in pairs]
    items = []
    for k, (file, tag) in enumerate(pairs):
        if not file:
            raise DataError(f"{where}: <image> number {k + 1} has no file attribute")
        items.append(_Item(name=file, text=tag or ""))
    return items


def read_lexicon_file(raw: bytes, items: list[_Item], where: str) -> None:
    """Attaches lexicons from a file to ``items``, in one of two layouts:

    * every line ``IMAGE_PATH<TAB>w1,w2,...`` -- matched by path (or its unique suffix);
    * one line ``w1,w2,...`` per item, in the annotation file's order (the seed's
      lexicon_50.txt); the line count must match.
    """
    lines = _decode_text(raw).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and all("\t" in ln for ln in lines if ln.strip()):
        by_path = {}
        for ln in lines:
            if ln.strip():
                path, _, words = ln.partition("\t")
                by_path[path.strip().replace("\\", "/").lstrip("./")] = _split_words(words)
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
        item.lexicon = _split_words(ln)


_IC13_LINE = re.compile(r'^\s*(?P<file>[^,]+?)\s*,\s*"(?P<text>.*)"\s*$')


def parse_ic13_gt(raw: bytes, where: str) -> list[_Item]:
    """IC13 Task 3 ground truth: lines ``word_1.png, "Tiredness"``; a quote or backslash inside
    the text is backslash-escaped. Unquoted ``file, text`` lines are accepted too."""
    items = []
    for lineno, line in enumerate(_decode_text(raw).splitlines(), 1):
        if not line.strip():
            continue
        m = _IC13_LINE.match(line)
        if m:
            text = re.sub(r"\\(.)", r"\1", m.group("text"))
            items.append(_Item(name=m.group("file"), text=text))
            continue
        file, sep, text = line.partition(",")
        if not sep or not file.strip():
            raise DataError(f"{where}:{lineno}: expected 'word_N.png, \"TEXT\"', got {line!r}")
        items.append(_Item(name=file.strip(), text=text.strip()))
    return items


# ---------------------------------------------------------------------------------------------
# Builders.


def _features(extra_lexicons: Sequence[str] = ()) -> tfds.features.FeaturesDict:
    spec = {
        "id": tfds.features.Text(doc="where the example came from in the download"),
        "image": tfds.features.Tensor(shape=(), dtype=np.object_,
                                      doc="encoded image bytes (JPEG or PNG)"),
        "text": tfds.features.Text(doc="transcription as annotated"),
        "lexicon": tfds.features.Sequence(tfds.features.Text(), doc="the image's lexicon"),
    }
    for name in extra_lexicons:
        spec[name] = tfds.features.Sequence(tfds.features.Text())
    return tfds.features.FeaturesDict(spec)


def _manual_dir(builder: "_Benchmark", dl_manager: Any) -> str:
    """dl_manager.manual_dir, with the download instructions when it is missing or empty."""
    try:
        return os.fspath(dl_manager.manual_dir)
    except AssertionError:
        where = getattr(dl_manager, "_manual_dir", None)
        raise DataError(f"{builder.name}: the manual download folder {os.fspath(where)!r} does "
                        "not exist or is empty.\n\n"
                        f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}") from None


class _Benchmark(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the benchmark builders: parse the annotations of each split at once (so
    missing files fail before anything is written), then read or crop images in order."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    EXTRA_LEXICONS: tuple[str, ...] = ()
    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=self.DESCRIPTION, features=_features(self.EXTRA_LEXICONS),
            homepage=self.HOMEPAGE, citation=self.CITATION, disable_shuffling=True)

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        manual_dir = _manual_dir(self, dl_manager)
        splits = self._find_splits(manual_dir)
        return {split: self._generate_examples(tree, items) for split, (tree, items) in
                splits.items()}

    def _find_splits(self, manual_dir: str) -> dict[str, tuple[_Tree, list[_Item]]]:
        """split -> (tree holding the images, items with image names resolved in it)."""
        raise NotImplementedError

    def _generate_examples(self, tree: _Tree, items: list[_Item]) -> Iterator[tuple[int, dict]]:
        cache: tuple[str, Image.Image | None] = ("", None)
        for k, item in enumerate(items):
            raw = tree.read(item.name)
            if item.box is None:
                image = raw
            else:
                if cache[0] != item.name:          # SVT: consecutive boxes share an image
                    try:
                        im = Image.open(io.BytesIO(raw))
                        im.load()
                        cache = (item.name, im)
                    except Exception as e:  # noqa: BLE001 -- any decoder error
                        raise DataError(f"{self.name}: cannot decode {item.name!r} in {tree}: "
                                        f"{e}") from None
                image = _crop(cache[1], item.box, item.id)
            example = {"id": item.id or item.name, "image": image, "text": item.text,
                       "lexicon": item.lexicon}
            for name in self.EXTRA_LEXICONS:
                example[name] = getattr(item, name)
            yield k, example


def _crop(image: Image.Image, box: tuple[int, int, int, int], what: str) -> bytes:
    """PNG of ``box`` (x, y, width, height; pixels) clipped to the image; b'' if nothing is
    left (kept, so the loader reports it as a bad image with its key)."""
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(image.width, x + w), min(image.height, y + h)
    if x1 <= x0 or y1 <= y0:
        log.warning("%s: box %s lies outside the %dx%d image; stored as an empty image",
                    what, box, image.width, image.height)
        return b""
    return _png(image.crop((x0, y0, x1, y1)))


def _with_names(tree: _Tree, root: str, items: list[_Item], where: str) -> list[_Item]:
    for item in items:
        if not item.id:
            item.id = item.name
        item.name = tree.resolve(root, item.name, where)
    return items


class Iiit5k(_Benchmark, skip_registration=True):
    """IIIT5K-Word (V3.0): 3000 test and 2000 train word crops, with per-image small (50)
    and medium (1000) lexicons.

    Assumed layout (the archive ``IIIT5K-Word_V3.0.tar.gz``, or it extracted)::

        IIIT5K/testdata.mat  IIIT5K/traindata.mat  IIIT5K/test/*.png  IIIT5K/train/*.png
    """

    name = "iiit5k"
    EXTRA_LEXICONS = ("lexicon_1k",)
    DESCRIPTION = ("IIIT 5K-Word: word crops from scene and born-digital images, with 50- and "
                   "1000-word lexicons per image (lexicon, lexicon_1k).")
    HOMEPAGE = "https://cvit.iiit.ac.in/research/projects/cvit-projects/the-iiit-5k-word-dataset"
    CITATION = ("@inproceedings{MishraBMVC12, author={A. Mishra and K. Alahari and C. V. Jawahar},"
                " title={Scene Text Recognition using Higher Order Language Priors}, "
                "booktitle={BMVC}, year={2012}}")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
IIIT5K-Word: download IIIT5K-Word_V3.0.tar.gz from
  https://cvit.iiit.ac.in/research/projects/cvit-projects/the-iiit-5k-word-dataset
and put it into the manual folder (--manual_dir), as the archive or extracted:
  MANUAL_DIR/IIIT5K-Word_V3.0.tar.gz
  or MANUAL_DIR/IIIT5K/{testdata.mat, traindata.mat, test/, train/}
testdata.mat is required (the test split); traindata.mat adds the train split."""

    def _find_splits(self, manual_dir):
        found = _find(manual_dir, "testdata.mat", prefer=("IIIT5K",))
        if found is None:
            raise _missing(self, manual_dir,
                           "testdata.mat (in a folder or IIIT5K-Word_V3.0.tar.gz)")
        tree, test_mat = found
        root = _dirname(test_mat)
        splits = {}
        for split in ("test", "train"):
            mat = f"{root}/{split}data.mat" if root else f"{split}data.mat"
            if mat not in tree.names:
                continue
            where = f"{tree}: {mat}"
            items = parse_iiit5k_mat(tree.read(mat), f"{split}data", where)
            splits[split] = (tree, _with_names(tree, root, items, where))
        return splits


class Svt(_Benchmark, skip_registration=True):
    """Street View Text: word boxes in Google Street View images, cropped here (647 test,
    257 train words), each with its image's ~50-word lexicon.

    Assumed layout (``svt.zip``, or it extracted)::

        svt1/test.xml  svt1/train.xml  svt1/img/*.jpg

    Boxes are clipped to the image; the crop is stored as PNG of the original pixels.
    """

    name = "svt"
    DESCRIPTION = "Street View Text word crops with per-image lexicons (~50 words)."
    HOMEPAGE = "http://vision.ucsd.edu/~kai/svt/"
    CITATION = ("@inproceedings{WangICCV11, author={K. Wang and B. Babenko and S. Belongie}, "
                "title={End-to-end Scene Text Recognition}, booktitle={ICCV}, year={2011}}")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
SVT (Street View Text): download svt.zip from
  http://vision.ucsd.edu/~kai/svt/
and put it into the manual folder (--manual_dir), as the archive or extracted:
  MANUAL_DIR/svt.zip
  or MANUAL_DIR/svt1/{test.xml, train.xml, img/}
test.xml is required (the test split); train.xml adds the train split."""

    def _find_splits(self, manual_dir):
        found = _find(manual_dir, "test.xml", prefer=("svt",))
        if found is None:
            raise _missing(self, manual_dir, "test.xml (in a folder or svt.zip)")
        tree, test_xml = found
        root = _dirname(test_xml)
        splits = {}
        for split in ("test", "train"):
            xml = f"{root}/{split}.xml" if root else f"{split}.xml"
            if xml not in tree.names:
                continue
            where = f"{tree}: {xml}"
            splits[split] = (tree, _with_names(tree, root, parse_svt_xml(tree.read(xml), where),
                                               where))
        return splits


class Ic03(_Benchmark, skip_registration=True):
    """ICDAR 2003 Robust Reading, robust word recognition: word crops and their tags.

    Assumed layout: each split's ``word.zip`` (or it extracted: ``word.xml`` next to
    ``word/1/1.jpg``...) in its own folder, as both sets ship an archive of that name::

        MANUAL_DIR/test/word.zip     (the TrialTest set; or word.xml + word/ extracted)
        MANUAL_DIR/train/word.zip    (the TrialTrain set; optional)

    A ``word.xml`` directly in MANUAL_DIR (or a lone word.zip) is taken as the test set.

    The 50-word lexicons used with IC03 (Wang et al. 2011) are *not* in the download: put
    them in ``lexicon_50.txt`` next to the split's word.zip / word.xml (or in MANUAL_DIR for
    the test split), one comma-separated lexicon per line in word.xml's order, or lines
    ``word/1/1.jpg<TAB>w1,w2,...``. Without it, ``lexicon`` is empty.
    """

    name = "ic03"
    LEXICON_FILE = "lexicon_50.txt"
    DESCRIPTION = "ICDAR 2003 robust word recognition: word crops and transcriptions."
    HOMEPAGE = "http://www.iapr-tc11.org/mediawiki/index.php/ICDAR_2003_Robust_Reading_Competitions"
    CITATION = ("@inproceedings{LucasICDAR03, author={S. M. Lucas and others}, title={ICDAR 2003 "
                "Robust Reading Competitions}, booktitle={ICDAR}, year={2003}}")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
ICDAR 2003 robust word recognition: from
  http://www.iapr-tc11.org/mediawiki/index.php/ICDAR_2003_Robust_Reading_Competitions
download the Robust Word Recognition sets (each is a 'word.zip' holding word.xml and word/...):
  MANUAL_DIR/test/word.zip     the TrialTest set (required; or extracted: test/word.xml, test/word/)
  MANUAL_DIR/train/word.zip    the TrialTrain set (optional)
Optional per-image 50-word lexicons (not part of the download):
  MANUAL_DIR/test/lexicon_50.txt   one comma-separated lexicon per line, in word.xml's order,
                                   or lines 'word/1/1.jpg<TAB>w1,w2,...'"""

    def _find_splits(self, manual_dir):
        splits = {}
        for split in ("test", "train"):
            folder = os.path.join(manual_dir, split)
            found = _find(folder, "word.xml", prefer=("word",))
            if found is None and split == "test":
                found = _find(manual_dir, "word.xml", prefer=("word",),
                              skip=lambda n: n.lower().startswith("train/"))
                folder = manual_dir
                if found is None:
                    raise _missing(self, manual_dir, "test/word.zip (or test/word.xml)")
            if found is None:
                continue
            tree, xml = found
            root, where = _dirname(xml), f"{tree}: {xml}"
            items = _with_names(tree, root, parse_ic03_xml(tree.read(xml), where), where)
            lexicon = self._lexicon_file(tree, root, folder,
                                         manual_dir if split == "test" else None)
            if lexicon is not None:
                raw, lexicon_where = lexicon
                read_lexicon_file(raw, items, lexicon_where)
            splits[split] = (tree, items)
        return splits

    def _lexicon_file(self, tree: _Tree, root: str, *folders: str | None):
        """(bytes, where) of lexicon_50.txt inside the tree next to word.xml, or in a folder."""
        inside = f"{root}/{self.LEXICON_FILE}" if root else self.LEXICON_FILE
        if inside in tree.names:
            return tree.read(inside), f"{tree}: {inside}"
        for folder in folders:
            path = folder and os.path.join(folder, self.LEXICON_FILE)
            if path and os.path.isfile(path):
                with open(path, "rb") as f:
                    return f.read(), path
        return None


class Ic13(_Benchmark, skip_registration=True):
    """ICDAR 2013 Focused Scene Text, Challenge 2 Task 3 (word recognition): word crops
    (1095 test, 848 train) with a ground-truth text file; no lexicons.

    Assumed layout (archives as downloaded, or each extracted to a folder of the same name)::

        MANUAL_DIR/Challenge2_Test_Task3_Images.zip        word_1.png ... (test images)
        MANUAL_DIR/Challenge2_Test_Task3_GT.txt            lines: word_1.png, "Tiredness"
        MANUAL_DIR/Challenge2_Training_Task3_Images_GT.zip word_*.png + gt.txt (optional)

    A test ground-truth file inside the images archive/folder is found there too.
    """

    name = "ic13"
    TEST_GT, TEST_IMAGES = "Challenge2_Test_Task3_GT.txt", "Challenge2_Test_Task3_Images"
    TRAIN = "Challenge2_Training_Task3_Images_GT"
    DESCRIPTION = "ICDAR 2013 Challenge 2 Task 3 word recognition: word crops and transcriptions."
    HOMEPAGE = "https://rrc.cvc.uab.es/?ch=2"
    CITATION = ("@inproceedings{KaratzasICDAR13, author={D. Karatzas and others}, title={ICDAR 2013"
                " Robust Reading Competition}, booktitle={ICDAR}, year={2013}}")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
ICDAR 2013 Challenge 2 (Focused Scene Text), Task 3 Word Recognition: register at
  https://rrc.cvc.uab.es/?ch=2&com=downloads
download and put into the manual folder (--manual_dir), as archives or extracted to folders
of the same names:
  MANUAL_DIR/Challenge2_Test_Task3_Images.zip           test word images (required)
  MANUAL_DIR/Challenge2_Test_Task3_GT.txt               test ground truth (required)
  MANUAL_DIR/Challenge2_Training_Task3_Images_GT.zip    training images + gt.txt (optional)"""

    def _container(self, manual_dir: str, stem: str) -> _Tree | None:
        for entry in sorted(os.listdir(manual_dir)):
            path = os.path.join(manual_dir, entry)
            bare = entry[:-len(next((s for s in ARCHIVE_SUFFIXES[::-1]
                                     if entry.lower().endswith(s)), ""))] or entry
            if bare.lower() == stem.lower() and (os.path.isdir(path) or bare != entry):
                return _Tree(path)
        return None

    def _find_splits(self, manual_dir):
        splits = {}
        images = self._container(manual_dir, self.TEST_IMAGES)
        gt_path = os.path.join(manual_dir, self.TEST_GT)
        if os.path.isfile(gt_path):
            with open(gt_path, "rb") as f:
                gt, where = f.read(), gt_path
        elif images is not None and images.with_basename(self.TEST_GT):
            name = images.with_basename(self.TEST_GT)[0]
            gt, where = images.read(name), f"{images}: {name}"
        else:
            raise _missing(self, manual_dir, self.TEST_GT)
        if images is None:
            raise _missing(self, manual_dir, f"{self.TEST_IMAGES}.zip (or a folder of that name)")
        splits["test"] = (images, _with_names(images, "", parse_ic13_gt(gt, where), where))
        train = self._container(manual_dir, self.TRAIN)
        if train is not None:
            names = train.with_basename("gt.txt")
            if not names:
                raise DataError(f"{self.name}: {train} holds no gt.txt")
            where = f"{train}: {names[0]}"
            items = parse_ic13_gt(train.read(names[0]), where)
            splits["train"] = (train, _with_names(train, _dirname(names[0]), items, where))
        return splits


# ---------------------------------------------------------------------------------------------
# The frozen synthetic set.

SYNTH_TEST_SEED = 2000   # distinct from the training (config.data.synth_seed = 1000) and val seeds


@dataclasses.dataclass(eq=False)
class SynthConfig(tfds.core.BuilderConfig):
    """``SynthWords(length=size, seed=seed, height=height)``, stored as its test split."""

    size: int = 10_000
    seed: int = SYNTH_TEST_SEED
    height: int = 32


def synth_config_name(size: int) -> str:
    """10000 -> '10k', 1000000 -> '1m', 1234 -> '1234'."""
    for unit, scale in (("m", 1_000_000), ("k", 1000)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


_SYNTH_NAME = re.compile(
    r"^(?P<size>\d+)(?P<unit>[km]?)(?:_seed(?P<seed>\d+))?(?:_h(?P<height>\d+))?$")


def synth_config(size: int, seed: int = SYNTH_TEST_SEED, height: int = 32) -> SynthConfig:
    name = synth_config_name(size)
    if seed != SYNTH_TEST_SEED:
        name += f"_seed{seed}"
    if height != 32:
        name += f"_h{height}"
    return SynthConfig(name=name, size=size, seed=seed, height=height,
                       description=f"SynthWords(length={size}, seed={seed}, height={height})")


def make_synth_source(config: SynthConfig) -> Any:
    """The random-access source a synth config stores (a module function: tests swap it)."""
    from grcnn_jax.data.synth import SynthWords

    return SynthWords(length=config.size, seed=config.seed, height=config.height)


def encode_png(image: bytes | np.ndarray) -> bytes:
    """uint8 [H, W] or [H, W, 3|4] -> PNG bytes (bytes are passed through)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise DataError(f"synthetic image of dtype {array.dtype}, expected uint8")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return _png(Image.fromarray(array))


class GrcnnSynth(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A frozen sample of the synthetic generator, so benchmarks keep one fixed test set even
    if the generator changes. Images are PNG (lossless: the arrays read back exactly)."""

    name = "grcnn_synth"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [synth_config(10_000), synth_config(100_000)]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description="SynthWords samples (grcnn_jax.data.synth), frozen.",
            features=_features(), disable_shuffling=True)

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        return {"test": self._generate_examples(make_synth_source(self.builder_config))}

    def _generate_examples(self, source: Any) -> Iterator[tuple[int, dict]]:
        for i in range(len(source)):
            record = source[i]
            yield i, {"id": str(record.get("key", i)), "image": encode_png(record["image"]),
                      "text": record["text"], "lexicon": list(record.get("lexicon") or [])}


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    b.name: b for b in (Iiit5k, Svt, Ic03, Ic13, GrcnnSynth)}


def make_builder(name: str, data_dir: str | None = None, *, size: int | None = None,
                 seed: int = SYNTH_TEST_SEED, height: int = 32) -> tfds.core.DatasetBuilder:
    """Our builder ``name`` ('iiit5k', 'grcnn_synth', 'grcnn_synth/100k', ...) over ``data_dir``.

    ``size`` (and ``seed``, ``height``) pick the grcnn_synth config; a config name after '/'
    also does. DataError for an unknown name.
    """
    base, _, config = name.partition("/")
    cls = BUILDERS.get(base)
    if cls is None:
        raise DataError(f"unknown dataset {name!r}; these are built here: {sorted(BUILDERS)}")
    kwargs: dict[str, Any] = {"data_dir": data_dir,
                              "file_format": tfds.core.FileFormat.ARRAY_RECORD}
    if cls is GrcnnSynth:
        if size is None and config:
            m = _SYNTH_NAME.match(config)
            if m is None:
                raise DataError(f"grcnn_synth config {config!r} is not SIZE[k|m][_seedS][_hH] "
                                "(e.g. 10k, 100k, 5000_seed3)")
            size = int(m["size"]) * {"": 1, "k": 1000, "m": 1_000_000}[m["unit"]]
            seed = int(m["seed"]) if m["seed"] else SYNTH_TEST_SEED
            height = int(m["height"]) if m["height"] else 32
        wanted = synth_config(size or 10_000, seed, height)
        # tfds insists on the class's own object for a config name it knows.
        kwargs["config"] = {c.name: c for c in GrcnnSynth.BUILDER_CONFIGS}.get(wanted.name, wanted)
    elif config:
        raise DataError(f"{base} has no configs, got {name!r}")
    return cls(**kwargs)


def build(name: str, data_dir: str | None = None, manual_dir: str | None = None,
          **synth: Any) -> tfds.core.DatasetBuilder:
    """Prepares dataset ``name`` into ``data_dir`` (tfds's default if None) and returns the builder.

    Benchmarks read their download from ``manual_dir`` (default: DATA_DIR/downloads/manual).
    """
    builder = make_builder(name, data_dir, **synth)
    config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir)
                                          if manual_dir else None)
    builder.download_and_prepare(download_config=config)
    return builder


# ---------------------------------------------------------------------------------------------
# Reading a prepared dataset.


def _str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


class TfdsSource:
    """Random-access source over a split of a prepared tfds dataset (see the data contract).

    ``source[i]`` -> {"key": "NAME/SPLIT:i", "image": encoded bytes (or a uint8 array for a
    dataset with an Image feature), "text": str, "id": str if stored, "lexicon": list[str]
    if non-empty, other "lexicon_*" lists likewise}.

    Args:
      name: a dataset built here ('iiit5k', 'grcnn_synth/100k', ...) or any other tfds
        dataset prepared in ``data_dir`` with 'image' and 'text' features
        ('NAME[/CONFIG][:VERSION]').
      split: a split, with tfds slicing ('test', 'train[:1000]'); a config may lead it
        ('100k/test') for specs that only carry 'NAME/SPLIT'.
      data_dir: where the dataset was prepared (tfds's default if None).
      builder_dir: or the prepared dataset's own folder (DATA_DIR/NAME[/CONFIG]/VERSION).

    Only the folder and split are pickled; each process opens the ArrayRecord files itself
    on first access. DataError at once if the dataset or split is missing or empty.
    """

    def __init__(self, name: str | None = None, split: str = "test",
                 data_dir: str | os.PathLike | None = None, *,
                 builder_dir: str | os.PathLike | None = None):
        if "/" in split:                       # split names never hold '/'
            config, _, split = split.rpartition("/")
            name = f"{name}/{config}"
        self.split = split
        self.data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else None
        where = f"data_dir {self.data_dir!r}" if self.data_dir else "tfds's default data_dir"
        if builder_dir is not None:
            self.builder_dir = os.fspath(builder_dir)
            self.name = name            # None: taken from the dataset's info below
            where = f"builder_dir {self.builder_dir!r}"
        elif name:
            self.name = name
            self.builder_dir = self._find_builder_dir(name, where)
        else:
            raise DataError("TfdsSource needs a dataset name or a builder_dir")
        self._what = f"tfds dataset {self.name!r} split {self.split!r} ({where})"
        self._source: Any = None
        self._pid = -1
        try:
            n = len(self._data())
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 -- tfds raises assorted types for a bad split
            raise DataError(f"{self._what}: cannot open: {type(e).__name__}: {e}") from None
        if n == 0:
            raise DataError(f"{self._what} is empty")
        self._len = n
        if self.name is None:       # 'grcnn_synth/10k/1.0.0' -> 'grcnn_synth/10k'
            self.name = self._builder_info.full_name.rsplit("/", 1)[0]
        features = self._builder_info.features
        missing = {"image", "text"} - set(features.keys())
        if missing:
            raise DataError(f"{self._what} has no {sorted(missing)} feature(s); it has "
                            f"{sorted(features.keys())}")
        self._lexicons = [k for k in features.keys() if k == "lexicon" or k.startswith("lexicon_")]

    def _find_builder_dir(self, name: str, where: str) -> str:
        base = name.partition("/")[0].partition(":")[0]
        try:
            if base in BUILDERS and ":" not in name:
                builder = make_builder(name, self.data_dir)
            else:
                builder = tfds.builder(name, data_dir=self.data_dir)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001
            raise DataError(f"tfds dataset {name!r} not found in {where}: {type(e).__name__}: "
                            f"{e}") from None
        if not builder.is_prepared():
            hint = (f"; build it: python -m grcnn_jax.data.tfds_builders build {base} "
                    f"--manual_dir DIR{' --data_dir ' + self.data_dir if self.data_dir else ''}"
                    if base in BUILDERS else "")
            raise DataError(f"tfds dataset {name!r} is not prepared in {where} (no "
                            f"{builder.data_dir!r}){hint}")
        return os.fspath(builder.data_dir)

    def _data(self) -> Any:
        if self._source is None or self._pid != os.getpid():
            builder = tfds.builder_from_directory(self.builder_dir)
            if self.split.split("[")[0] not in builder.info.splits:
                raise DataError(f"{self._what}: no such split; it has "
                                f"{sorted(builder.info.splits.keys())}")
            if builder.info.splits[self.split].num_examples == 0:
                # ArrayRecord refuses an empty file list with an unhelpful ValueError.
                raise DataError(f"{self._what} is empty")
            self._builder_info = builder.info
            self._source = builder.as_data_source(split=self.split)
            self._pid = os.getpid()
        return self._source

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict:
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} out of range for {self._what} ({self._len} records)")
        i = int(i) % self._len
        example = self._data()[i]
        image = example["image"]
        record = {"key": f"{self.name}/{self.split}:{i}",
                  "image": bytes(image) if isinstance(image, (bytes, np.bytes_)) else image,
                  "text": _str(example["text"])}
        if "id" in example:
            record["id"] = _str(example["id"])
        for field in self._lexicons:
            words = [_str(w) for w in example[field]]
            if words:
                record[field] = words
        return record

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_source"], state["_pid"] = None, -1
        state.pop("_builder_info", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, split={self.split!r}, {self._len} records)"


# ---------------------------------------------------------------------------------------------
# The command.


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grcnn_jax.data.tfds_builders",
        description="Prepare scene-text benchmarks and frozen synthetic sets as tfds "
                    "(ArrayRecord) datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="prepare one dataset")
    b.add_argument("name", help=f"one of {sorted(BUILDERS)} (grcnn_synth/10k, /100k: a config)")
    b.add_argument("--manual_dir", help="the hand-downloaded files (benchmarks; default "
                                        "DATA_DIR/downloads/manual)")
    b.add_argument("--data_dir", help="where to write (default: tfds's, ~/tensorflow_datasets)")
    b.add_argument("--size", type=int, help="grcnn_synth: number of examples")
    b.add_argument("--seed", type=int, default=SYNTH_TEST_SEED, help="grcnn_synth: seed")
    b.add_argument("--height", type=int, default=32, help="grcnn_synth: image height, pixels")
    i = sub.add_parser("instructions", help="print a benchmark's download instructions")
    i.add_argument("name", choices=sorted(n for n in BUILDERS if n != "grcnn_synth"))
    args = parser.parse_args(argv)
    if args.command == "instructions":
        print(BUILDERS[args.name].MANUAL_DOWNLOAD_INSTRUCTIONS)
        return 0
    synth = {}
    if args.name.partition("/")[0] == "grcnn_synth":
        synth = {"size": args.size, "seed": args.seed, "height": args.height}
    elif args.size is not None:
        parser.error("--size is for grcnn_synth only")
    try:
        builder = build(args.name, args.data_dir, args.manual_dir, **synth)
    except DataError as e:
        from grcnn_jax.runtime import fatal_line

        print(fatal_line(e), file=sys.stderr)
        return 2
    name = builder.name + (f"/{builder.builder_config.name}" if builder.builder_config else "")
    print(f"\nprepared {name} {builder.version} in {builder.data_dir}")
    for split, info in sorted(builder.info.splits.items()):
        print(f"  {split}: {info.num_examples} examples   (config spec: tfds:{name}/{split})")
    return 0


if __name__ == "__main__":
    # Run the module's own copy, not __main__'s, so the builder classes are importable by name.
    from grcnn_jax.data import tfds_builders

    sys.exit(tfds_builders.main())
