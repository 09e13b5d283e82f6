import os

import pytest
import torch

# Small CPU machines: keep every test single-threaded and deterministic.
torch.set_num_threads(int(os.environ.get("DIFFUSEKIT_TEST_THREADS", "1")))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def sde_registry(isolated_registry):
    """An isolated registry holding the core's grids, the score-SDE plugin and the ONNX exporter
    (tests register their own toy components on top)."""
    import diffusekit.builtins
    import diffusekit_onnx
    import diffusekit_sde

    for module in (diffusekit.builtins, diffusekit_sde, diffusekit_onnx):
        info = isolated_registry.load_module(module)
        assert info.status == "loaded", info.error
    return isolated_registry
