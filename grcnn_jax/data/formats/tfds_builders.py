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

The parts: ``tfds_downloads`` (reading a download, folder or archive),
``tfds_annotations`` (the benchmarks' annotation parsers), ``tfds_benchmarks`` (their
builders), ``tfds_source`` (``TfdsSource``); this module holds the frozen synthetic set's
builder and the registry ``BUILDERS`` with ``make_builder`` / ``build``.

Build and read::

    grcnn-tfds build iiit5k --manual_dir ~/downloads/iiit5k
    grcnn-tfds build grcnn_synth --size 10000 --data_dir DIR
    grcnn-tfds instructions svt     # where to download it
    TfdsSource("iiit5k", split="test", data_dir=DIR)     # or the config spec 'tfds:iiit5k/test'
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Iterator

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.tfds_benchmarks import Ic03, Ic13, Iiit5k, Svt, example_features
from grcnn_jax.data.formats.tfds_downloads import png_bytes


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
    """The random-access generator whose records a synth config stores."""
    from grcnn_jax.data.synth.generator import SynthWords

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
    return png_bytes(Image.fromarray(array))


class GrcnnSynth(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A frozen sample of the synthetic generator, so benchmarks keep one fixed test set even
    if the generator changes. Images are PNG (lossless: the arrays read back exactly)."""

    name = "grcnn_synth"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [synth_config(10_000), synth_config(100_000)]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description="SynthWords samples (grcnn_jax.data.synth.generator), frozen.",
            features=example_features(), disable_shuffling=True)

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
