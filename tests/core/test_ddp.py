"""Two-process DDP training on CPU (gloo) under torchrun, as a user would launch it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import diffusekit as dk

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    info0, info1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert info0["world"] == info1["world"] == 2
    # each rank saw different data (different losses) ...
    assert info0["losses"] != info1["losses"]
    # ... yet both hold the same weights: rank 0's initial weights were broadcast and every
    # gradient was averaged across the two processes
    assert set(r0) == set(r1)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # rank 0 saved a loadable pipeline holding those weights
    pipe = dk.Pipeline.load(tmp_path / "run")
    for k, v in pipe.network.state_dict().items():
        assert torch.equal(v, r0[k])
    assert all(torch.isfinite(torch.tensor(info0["losses"])))
