"""Every notebook under notebooks/ runs top to bottom on the CPU with small settings."""

import pytest

from conftest import REPO

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# Figures each notebook must show (image outputs) when it has run.
MIN_FIGURES = {"quickstart": 3, "receptive_fields": 5, "evaluate_benchmarks": 0}


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= set(MIN_FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_and_colab_ready(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), \
        f"{path.name} is committed with outputs: clear them"
    setup = code[0].source
    assert "REPO_URL" in setup and "google.colab" in setup and "pip" in setup


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("GRCNN_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("GRCNN_NOTEBOOK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("GRCNN_REPO", str(REPO))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("MPLBACKEND", raising=False)       # the kernel's inline backend, as in Jupyter
    if path.stem == "evaluate_benchmarks":
        # A checkpoint to evaluate (the notebook would otherwise train one with the command
        # the quickstart notebook runs: seconds saved here).
        from helpers import save_checkpoint, tiny_untrained

        save_checkpoint(tmp_path / "run", tiny_untrained("grcl", 2), step=3)
        monkeypatch.setenv("GRCNN_EVAL_WORKDIR", str(tmp_path / "run"))
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    figures = sum("image/png" in o.get("data", {}) for c in notebook.cells
                  if c.cell_type == "code" for o in c.outputs)
    assert figures >= MIN_FIGURES.get(path.stem, 0), f"{path.name} showed {figures} figures"
