"""tensorflow-datasets builders for the scene-text benchmarks (IIIT5K, SVT, IC03, IC13), read
from their hand downloads; the examples' features and layout are described in
``tfds_builders``, which lists them in ``BUILDERS``.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.tfds_annotations import (Item, parse_ic03_xml, parse_ic13_gt,
                                             parse_iiit5k_mat, parse_svt_xml,
                                             read_lexicon_file)
from grcnn_jax.data.formats.tfds_downloads import ARCHIVE_SUFFIXES, parent_name, find_file, png_bytes, DownloadTree

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Builders.


def example_features(extra_lexicons: Sequence[str] = ()) -> tfds.features.FeaturesDict:
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


def _missing(builder: "_Benchmark", manual_dir: str, what: str) -> DataError:
    return DataError(
        f"{builder.name}: {what} not found in the manual download folder {manual_dir!r}.\n\n"
        f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")


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
            builder=self, description=self.DESCRIPTION, features=example_features(self.EXTRA_LEXICONS),
            homepage=self.HOMEPAGE, citation=self.CITATION, disable_shuffling=True)

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        manual_dir = _manual_dir(self, dl_manager)
        splits = self._find_splits(manual_dir)
        return {split: self._generate_examples(tree, items) for split, (tree, items) in
                splits.items()}

    def _find_splits(self, manual_dir: str) -> dict[str, tuple[DownloadTree, list[Item]]]:
        """split -> (tree holding the images, items with image names resolved in it)."""
        raise NotImplementedError

    def _generate_examples(self, tree: DownloadTree, items: list[Item]) -> Iterator[tuple[int, dict]]:
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
    return png_bytes(image.crop((x0, y0, x1, y1)))


def _with_names(tree: DownloadTree, root: str, items: list[Item], where: str) -> list[Item]:
    for item in items:
        if not item.id:
            item.id = item.name
        item.name = tree.resolve(root, item.name, where)
    return items


def _test_and_train(builder, manual_dir, pattern: str, prefer: str, archive: str,
                    parse) -> dict:
    """The test split (required) and train split (if there) of a benchmark whose annotation
    files are ``pattern.format(split=...)`` side by side, found in ``manual_dir`` (a folder
    or ``archive``, preferring paths under ``prefer``): split -> (tree, items named by
    ``parse(data, split, where)``)."""
    test_name = pattern.format(split="test")
    found = find_file(manual_dir, test_name, prefer=(prefer,))
    if found is None:
        raise _missing(builder, manual_dir, f"{test_name} (in a folder or {archive})")
    tree, test_file = found
    root = parent_name(test_file)
    splits = {}
    for split in ("test", "train"):
        name = pattern.format(split=split)
        path = f"{root}/{name}" if root else name
        if path not in tree.names:
            continue
        where = f"{tree}: {path}"
        splits[split] = (tree, _with_names(tree, root, parse(tree.read(path), split, where),
                                           where))
    return splits


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
        return _test_and_train(self, manual_dir, "{split}data.mat", "IIIT5K",
                               "IIIT5K-Word_V3.0.tar.gz",
                               lambda data, split, where: parse_iiit5k_mat(data, f"{split}data",
                                                                           where))


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
        return _test_and_train(self, manual_dir, "{split}.xml", "svt", "svt.zip",
                               lambda data, split, where: parse_svt_xml(data, where))


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
            found = find_file(folder, "word.xml", prefer=("word",))
            if found is None and split == "test":
                found = find_file(manual_dir, "word.xml", prefer=("word",),
                              skip=lambda n: n.lower().startswith("train/"))
                folder = manual_dir
                if found is None:
                    raise _missing(self, manual_dir, "test/word.zip (or test/word.xml)")
            if found is None:
                continue
            tree, xml = found
            root, where = parent_name(xml), f"{tree}: {xml}"
            items = _with_names(tree, root, parse_ic03_xml(tree.read(xml), where), where)
            lexicon = self._lexicon_file(tree, root, folder,
                                         manual_dir if split == "test" else None)
            if lexicon is not None:
                raw, lexicon_where = lexicon
                read_lexicon_file(raw, items, lexicon_where)
            splits[split] = (tree, items)
        return splits

    def _lexicon_file(self, tree: DownloadTree, root: str, *folders: str | None):
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

    def _container(self, manual_dir: str, stem: str) -> DownloadTree | None:
        for entry in sorted(os.listdir(manual_dir)):
            path = os.path.join(manual_dir, entry)
            bare = entry[:-len(next((s for s in ARCHIVE_SUFFIXES[::-1]
                                     if entry.lower().endswith(s)), ""))] or entry
            if bare.lower() == stem.lower() and (os.path.isdir(path) or bare != entry):
                return DownloadTree(path)
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
            splits["train"] = (train, _with_names(train, parent_name(names[0]), items, where))
        return splits
