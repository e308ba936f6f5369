"""The teaching notebooks run top to bottom, assert in their last cells the facts they teach,
and print nothing on stderr (no solver, pandapower or pandas warnings reach a student)."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_teaches(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    )
    client.execute()  # a failing cell (an assertion of what it teaches) raises here
    stderr = [
        output["text"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("name") == "stderr"
    ]
    assert not stderr, f"{path.name} printed on stderr: {stderr[0][:300]}"
    last = notebook.cells[-1]
    assert last.cell_type == "code" and "assert" in last.source, "the last cell asserts its facts"
