import pytest
import torch

from diffusekit_masked.oracle import JointOracle


@pytest.fixture
def joint():
    """A fixed random joint over L = 3 positions and V = 3 tokens (no near-zero cells)."""
    g = torch.Generator().manual_seed(3)
    p = torch.rand(27, generator=g, dtype=torch.float64) + 0.2
    return (p / p.sum()).view(3, 3, 3)


@pytest.fixture
def oracle(joint):
    return JointOracle(joint)
