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
builder, the registry ``BUILDERS`` with ``make_builder`` / ``build``, and the command, and
re-exports the others' public names.

Build and read::

    python -m grcnn_jax.data.formats.tfds_builders build iiit5k --manual_dir ~/downloads/iiit5k
    python -m grcnn_jax.data.formats.tfds_builders build grcnn_synth --size 10000 --data_dir DIR
    python -m grcnn_jax.data.formats.tfds_builders instructions svt     # where to download it
    TfdsSource("iiit5k", split="test", data_dir=DIR)     # or the config spec 'tfds:iiit5k/test'
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Any, Iterator, Sequence

import numpy as np
from absl import flags
from PIL import Image
import tensorflow_datasets as tfds

from grcnn_jax import process as runtime
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.tfds_annotations import (_Item, parse_ic03_xml, parse_ic13_gt,
                                             parse_iiit5k_mat, parse_svt_xml,
                                             read_lexicon_file)
from grcnn_jax.data.formats.tfds_benchmarks import Ic03, Ic13, Iiit5k, Svt, _features
from grcnn_jax.data.formats.tfds_downloads import ARCHIVE_SUFFIXES, _png
from grcnn_jax.data.formats.tfds_source import TfdsSource

__all__ = [
    "ARCHIVE_SUFFIXES", "BUILDERS", "GrcnnSynth", "Ic03", "Ic13", "Iiit5k", "SUBCOMMANDS",
    "SYNTH_TEST_SEED", "Svt", "SynthConfig", "TfdsSource", "build", "define_flags", "encode_png",
    "main", "make_builder", "make_synth_source", "parse_ic03_xml", "parse_ic13_gt",
    "parse_iiit5k_mat", "parse_svt_xml", "read_lexicon_file", "run", "synth_config",
    "synth_config_name",
    "_Item",    # the parsers' item type (tests build some)
]


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
            builder=self, description="SynthWords samples (grcnn_jax.data.synth.generator), frozen.",
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
# The command.


SUBCOMMANDS = ("build", "instructions")
_BUILD_FLAGS = ("manual_dir", "data_dir", "size", "seed", "height")
_SYNTH_FLAGS = ("size", "seed", "height")


def define_flags(flag_values) -> None:
    """The flags of ``python -m grcnn_jax.data.formats.tfds_builders`` (on ``flag_values``): all of
    them are ``build``'s; ``instructions NAME`` takes none."""
    flags.DEFINE_string("manual_dir", None, "build: the hand-downloaded files (benchmarks; "
                        "default DATA_DIR/downloads/manual)", flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "build: where to write (default: tfds's, "
                        "~/tensorflow_datasets)", flag_values=flag_values)
    flags.DEFINE_integer("size", None, "build grcnn_synth: number of examples", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", SYNTH_TEST_SEED, "build grcnn_synth: seed",
                         flag_values=flag_values)
    flags.DEFINE_integer("height", 32, "build grcnn_synth: image height, pixels", lower_bound=8,
                         flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    """``build NAME [flags]`` or ``instructions NAME``; returns the exit status (2: the
    download or the name is bad)."""
    usage = (__doc__ + "\nCommands: build NAME (NAME: one of "
             f"{', '.join(sorted(BUILDERS))}; grcnn_synth/10k, /100k: a config), "
             "instructions NAME (a benchmark's download instructions).")
    FLAGS, rest = runtime.parse_command_line(define_flags, argv, usage, positional=True)
    if not rest or rest[0] not in SUBCOMMANDS:
        got = f"got {rest[0]!r}" if rest else "got none"
        raise runtime.usage_error(f"give a command, 'build NAME' or 'instructions NAME' ({got})")
    command = rest[0]
    if len(rest) != 2:
        got = f"{' '.join(map(repr, rest[1:]))}" if len(rest) > 2 else "none"
        raise runtime.usage_error(f"{command} takes one dataset NAME (got {got})")
    name = rest[1]
    if command == "instructions":
        given = [f"--{f}" for f in _BUILD_FLAGS if FLAGS[f].present]
        if given:
            raise runtime.usage_error(f"{', '.join(given)}: for 'build' only, 'instructions' "
                                      "takes none")
        benchmarks = sorted(n for n in BUILDERS if n != "grcnn_synth")
        if name not in benchmarks:
            raise runtime.usage_error(f"instructions {name!r}: there are instructions for "
                               f"{', '.join(benchmarks)}")
        print(BUILDERS[name].MANUAL_DOWNLOAD_INSTRUCTIONS)
        return 0
    synth = {}
    if name.partition("/")[0] == "grcnn_synth":
        synth = {"size": FLAGS.size, "seed": FLAGS.seed, "height": FLAGS.height}
    else:
        given = [f"--{f}" for f in _SYNTH_FLAGS if FLAGS[f].present]
        if given:
            raise runtime.usage_error(f"{', '.join(given)}: for grcnn_synth only, not {name!r}")
    try:
        builder = build(name, FLAGS.data_dir, FLAGS.manual_dir, **synth)
    except DataError as e:
        if FLAGS.verbosity >= 1 or runtime.traceback_requested(argv):
            raise
        print(runtime.fatal_line(e), file=sys.stderr)
        return 2
    name = builder.name + (f"/{builder.builder_config.name}" if builder.builder_config else "")
    print(f"\nprepared {name} {builder.version} in {builder.data_dir}")
    for split, info in sorted(builder.info.splits.items()):
        print(f"  {split}: {info.num_examples} examples   (config spec: tfds:{name}/{split})")
    return 0


def run() -> None:
    """The ``grcnn-tfds`` command (``python -m grcnn_jax.data.formats.tfds_builders``): refusals exit
    with one FATAL line."""
    # Run the module's own copy, not __main__'s, so the builder classes are importable by name.
    from grcnn_jax.data.formats import tfds_builders

    with runtime.refusals_as_one_line():
        raise SystemExit(tfds_builders.main())


if __name__ == "__main__":
    run()
