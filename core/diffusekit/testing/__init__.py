"""Conformance kit for diffusekit components: closed-form oracles, distribution metrics
and checks that built-in tests and third-party plugin authors share.

``pytest`` picks up :mod:`diffusekit.testing.pytest_plugin` automatically (fixture
``isolated_registry``).
"""

from .checks import check_parameterization, check_process, check_sampler
from .conformance import CheckResult, check_object
from .metrics import mmd, mmd_noise_floor
from .oracles import GaussianMixture, MixtureOracle

__all__ = ["GaussianMixture", "MixtureOracle", "mmd", "mmd_noise_floor", "check_process",
           "check_sampler", "check_parameterization", "check_object", "CheckResult"]
