import pytest

from diffusekit.testing.oracles import GaussianMixture


@pytest.fixture(scope="module")
def ring():
    return GaussianMixture.ring(8, 1.5, 0.1)
