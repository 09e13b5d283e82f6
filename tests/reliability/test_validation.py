"""Silent wrong results are refused: network outputs that merely broadcast, numbers given as
booleans, and long jobs that say nothing when their output is redirected."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch
from torch import nn

import diffusekit as dk
from diffusekit.errors import ConfigError, ShapeError
from diffusekit.progress import Progress


class Faulty(nn.Module):
    """A network whose output has the wrong shape or dtype (fault injection)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(3, 2)

    def forward(self, x, t, cond=None):
        y = self.lin(torch.cat([x, t[:, None]], 1))
        return {"b1": y[:, :1], "1d": y.mean(0, keepdim=True), "scalar": y.mean(),
                "float64": y.double(), "dict": {"x": y}}[self.kind]


@pytest.mark.parametrize("kind, match", [("b1", r"shape \(16, 1\) does not match the state's \(16, 2\)"),
                                         ("1d", r"shape \(1, 2\) does not match"),
                                         ("scalar", r"shape \(\) does not match"),
                                         ("float64", "dtype torch.float64 does not match the state's torch.float32"),
                                         ("dict", "expected a Tensor of shape")])
def test_broadcasting_network_outputs_are_refused_in_training_and_sampling(kind, match):
    pipe = dk.Pipeline(process="vp", parameterization="eps", network=Faulty(kind), sample_shape=(2,),
                       sampler={"name": "ddim", "steps": 3})
    data = torch.randn(64, 2)
    with pytest.raises(ShapeError, match=match):
        dk.train(pipe, data, steps=2, batch_size=16, progress=False)
    with pytest.raises(ShapeError, match=match.replace("16", "5")):
        pipe.sample(5)


def test_the_output_check_runs_once_per_call_not_per_step():
    eps = type(dk.create("parameterization", "eps"))
    calls = []

    class CountingEps(eps):
        def check_output(self, raw, x_t):
            calls.append(tuple(raw.shape))
            super().check_output(raw, x_t)

    pipe = dk.Pipeline(process="vp", parameterization=CountingEps(), sampler={"name": "ddim", "steps": 6},
                       network={"name": "mlp", "dim": 2, "hidden": 8})
    pipe.sample(4)
    assert pipe.last_nfe == 6 and calls == [(4, 2)]


@pytest.mark.parametrize("spec, loc", [({"name": "mlp", "dim": True}, "network.dim"),
                                        ({"name": "mlp", "dim": 2, "hidden": False}, "network.hidden")])
def test_numbers_given_as_booleans_are_refused(spec, loc):
    with pytest.raises(ConfigError, match=f"{loc}: .*not a boolean"):
        dk.create("network", spec)


def test_progress_lines_when_output_is_not_a_terminal():
    stream = io.StringIO()
    bar = Progress(100, "training", stream=stream, interval=1e-9)
    for i in range(100):
        bar.update(1, loss=0.5)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 100
    assert lines[0].startswith("training: step 1/100 (1%), loss 0.5, ") and "steps/s" in lines[0] and "ETA" in lines[0]
    quiet = io.StringIO()
    short = Progress(10, "training", stream=quiet, interval=3600)
    short.update(10)
    short.close()
    assert quiet.getvalue() == ""  # a short job prints nothing


@pytest.mark.slow
def test_dk_train_defaults_report_progress_to_a_redirected_log(tmp_path):
    code = ("import diffusekit as dk\n"
            "pipe = dk.Pipeline.from_config({'process': 'vp', 'parameterization': 'eps', "
            "'network': {'name': 'mlp', 'dim': 2, 'hidden': 16}})\n"
            "dk.train(pipe, {'name': 'moons', 'n': 256}, steps=300, batch_size=32)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "DIFFUSEKIT_PROGRESS_INTERVAL": "0.05",
                              "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("training: step ")]
    assert len(lines) >= 2 and lines[-1].startswith("training: step 300/300 (100%)")
