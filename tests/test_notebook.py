"""The comparison notebook runs top to bottom (on 500 images), so a broken cell fails CI."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "MLP_vs_CNN.ipynb"


def test_notebook_runs_top_to_bottom(tmp_path, mnist_path, monkeypatch):
    monkeypatch.setenv("DIGITS_NOTEBOOK_LIMIT", "500")
    monkeypatch.setenv("DIGITS_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("DIGITS_DATA_DIR", str(mnist_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # fmt: skip
    assert (tmp_path / "runs" / "report.md").is_file()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
