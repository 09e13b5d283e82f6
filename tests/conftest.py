import os

import pytest
import torch

# Small CPU machines: keep every test single-threaded and deterministic.
torch.set_num_threads(int(os.environ.get("DIFFUSEKIT_TEST_THREADS", "1")))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)
