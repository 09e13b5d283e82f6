"""The README's composition example runs as printed, and .ci/run runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _block(lang: str, after: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(after):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_ci_runs_the_readme_test_command():
    command = _block("bash", "## Tests").strip()
    assert "python -m pytest -q" in command and "examples/plugin-template" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert "## Tests" in ci  # .ci/run extracts and runs that block verbatim


@pytest.mark.slow
def test_readme_composition_example_runs(tmp_path, monkeypatch, capsys):
    code = _block("python", "## Compose, train, sample, save")
    assert len(code.strip().splitlines()) <= 25
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    mmd_line = [ln for ln in out.splitlines() if ln.startswith("MMD to held-out data")]  # not progress lines
    assert len(mmd_line) == 1, out
    values = [float(v) for v in re.findall(r"(-?\d+\.\d+)", mmd_line[0])]
    assert len(values) == 2 and all(v < 0.02 for v in values), out
    assert (tmp_path / "runs" / "readme" / "model.safetensors").exists()
