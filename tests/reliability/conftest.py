"""Fault-injection helpers: child processes that are killed or run out of file space, and small
pipelines to save, train and load."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import diffusekit as dk

SMALL = {"process": "vp", "parameterization": "eps", "sampler": {"name": "ddim", "steps": 4},
         "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1}}


def small_pipe(seed: int = 0, **net) -> dk.Pipeline:
    torch.manual_seed(seed)
    cfg = dict(SMALL)
    cfg["network"] = {**SMALL["network"], **net}
    return dk.Pipeline.from_config(cfg)


def weights(pipe) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in pipe.model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def python_child(code: str, *, fsize_limit: int | None = None, **popen) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter (single-threaded); ``fsize_limit`` caps the size of any
    file it writes (RLIMIT_FSIZE: a write past it fails with EFBIG, like a full disk)."""
    def limit():
        if fsize_limit is not None:
            import resource
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    env = dict(os.environ, OMP_NUM_THREADS="1", DIFFUSEKIT_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], preexec_fn=limit, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture
def moons():
    return dk.create("dataset", {"name": "moons", "n": 256})
