"""``TfdsSource``: the random-access source over a split of a prepared tfds dataset (ours,
from ``tfds_builders``, or any other with 'image' and 'text' features).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.tfds_builders import BUILDERS, make_builder


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
            hint = (f"; build it: grcnn-tfds build {base} "
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
