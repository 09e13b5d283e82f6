"""Flow samplers: Euler, Heun and midpoint on the flow ODE, and Euler-Maruyama on the
marginal-preserving SDE (one file per method)."""

from .base import FlowODEConfig, FlowSampler, flow_grid
from .euler import FlowEuler
from .heun import FlowHeun
from .midpoint import FlowMidpoint
from .stochastic import FlowSDE, FlowSDEConfig

__all__ = ["FlowODEConfig", "FlowSampler", "flow_grid", "FlowEuler", "FlowHeun", "FlowMidpoint", "FlowSDE",
           "FlowSDEConfig"]
