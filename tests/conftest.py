"""Test settings: the CPU backend, a compilation cache, shared fixtures (helpers.py has the
shared functions)."""

import os
import pathlib
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Compiling, not running, is what takes this suite's time (its models are tiny). XLA's LLVM
# backend at -O0 compiles about twice as fast; the HLO passes, which decide what is computed,
# are the same. A persistent compilation cache, shared by the test processes and the training
# subprocesses they start (they inherit the environment), compiles each program once.
# Training's step is compiled with XLA's FAST_COMPILE preset (process.step_compiler_options,
# which names a preset in XLA_FLAGS overrides); at -O0 that preset's lighter fusion makes the
# tiny model's step 7x slower to run (265 ms -> 40 ms at batch 8; compile time about 5-7 s
# either way), which the tests that train for tens of steps would pay, so here the step gets
# the default preset.
for flag, value in (("--xla_backend_optimization_level", "0"),
                    ("--xla_cpu_opt_preset", "CPU_OPT_PRESET_DEFAULT")):
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}={value}".strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"grcnn_jax-test-xla-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))     # LRU beyond 2 GiB

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "grcnn_reference.npz"


@pytest.fixture(scope="session")
def golden() -> dict:
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="session")
def lmdb_path(tmp_path_factory) -> str:
    """24 word images (helpers.make_lmdb) in an LMDB, for tiny training runs; read only."""
    from helpers import make_lmdb, once_per_session

    folder = once_per_session(tmp_path_factory, "words24",
                              lambda d: make_lmdb(d / "train.lmdb", n=24))
    return str(folder / "train.lmdb")


def load_config(name: str):
    """Loads configs/<name>.py's get_config() the way config_flags does: by file path."""
    from grcnn_jax.config.defaults import load_config_file

    return load_config_file(str(REPO / "configs" / f"{name}.py"))
