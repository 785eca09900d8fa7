"""Test settings: the CPU backend, and shared helpers."""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "grcnn_reference.npz"


@pytest.fixture(scope="session")
def golden() -> dict:
    return dict(np.load(GOLDEN))


def load_config(name: str):
    """Loads configs/<name>.py's get_config() the way config_flags does: by file path."""
    import importlib.util

    path = REPO / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
