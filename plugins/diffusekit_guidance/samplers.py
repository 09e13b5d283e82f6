"""``ddim-renoise``: the solvers plugin's DDIM under the guidance plugin's defaults.

DDIM (Song et al. 2021a, eqs. 12 and 16) is implemented once, in
:mod:`diffusekit_solvers.ddim`; every Gaussian solver there re-noises with the prediction's own
(x0, eps) when the prediction carries a re-noising estimate (CFG++), so CFG++ runs with
``ddim``, ``dpm-solver++``, ``deis``, ``unipc`` and ``dpm-solver`` alike. This registered name
keeps the guidance plugin's historical defaults (50 steps on a uniform time grid, an
AdditiveGaussian process) for the CFG / CFG++ examples and tests.
"""

from __future__ import annotations

from typing import Union

from pydantic import Field

from diffusekit.process import AdditiveGaussian
from diffusekit_solvers.ddim import DDIM, DDIMConfig


class DDIMRenoiseConfig(DDIMConfig):
    steps: int = Field(50, ge=1, le=100_000, description="number of steps (= NFE without guidance batching)")
    schedule: Union[str, dict] = Field("uniform", description="time grid (registered schedule name)")


class DDIMRenoise(DDIM):
    """DDIM with 50 uniform steps by default (AdditiveGaussian processes)."""

    Config = DDIMRenoiseConfig
    requires = (AdditiveGaussian,)

    def required_capabilities(self) -> tuple:
        return self.requires
