"""The optional base class of registered networks and the pipeline's single module.

Any ``torch.nn.Module`` called as ``network(x_t, t, cond)`` can be a pipeline's network. A
network that subclasses :class:`Network` can also tell the pipeline what it knows about its
inputs (every attribute the core reads is declared here with its default):

* ``sample_shape``: the per-sample state shape it was built for (a tuple, a dict of tuples
  for dict states, or None when it accepts several);
* ``time_conditioned``: whether it reads ``t`` (time-agnostic masked-diffusion networks do
  not, which lets samplers cache predictions between steps);
* ``example_inputs(batch)``: ``(x_t, t, cond)`` for export and conformance probes.

:class:`PipelineModule` holds the network, the conditioner and any learned guidance parts in
one ``nn.Module``, so EMA, DDP, dtype / device moves, save / load and export treat them alike.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn


class Network(nn.Module):
    """Optional base of registered networks (declares what the core may ask a network)."""

    #: per-sample shape of the states the network was built for (None: not fixed)
    sample_shape: Optional[Any] = None
    #: False when the output does not depend on t (samplers may then cache predictions)
    time_conditioned: bool = True

    def example_inputs(self, batch: int) -> Optional[tuple]:
        """``(x_t, t, cond)`` for a batch of ``batch`` (None: the network gives no example)."""
        return None


def _bare(network: Any) -> Any:
    """The network inside a PipelineModule (or a DDP wrapper of one)."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(network, DistributedDataParallel):
        network = network.module
    if isinstance(network, PipelineModule):
        network = network.network
    return network


def network_sample_shape(network: Any) -> Optional[Any]:
    """The declared per-sample shape of a :class:`Network` (None otherwise)."""
    network = _bare(network)
    return network.sample_shape if isinstance(network, Network) else None


def network_example(network: Any, batch: int) -> Optional[tuple]:
    """``(x_t, t, cond)`` from a :class:`Network` (None otherwise)."""
    network = _bare(network)
    return network.example_inputs(batch) if isinstance(network, Network) else None


def time_conditioned(network: Any) -> bool:
    """False only for a :class:`Network` that declares it ignores t."""
    network = _bare(network)
    return network.time_conditioned if isinstance(network, Network) else True


class PipelineModule(nn.Module):
    """network + conditioner (+ learned guidance parts) as one module.

    ``forward(x_t, t, cond)`` encodes the raw condition with the conditioner (when there is
    one and a condition is given) and calls the network: the module a DDP wrapper, an EMA,
    ``state_dict`` and an exporter see."""

    def __init__(self, network: Any, conditioner: Optional[nn.Module] = None,
                 guidance: Optional[list] = None) -> None:
        super().__init__()
        self.network = network
        self.conditioner = conditioner
        self.guidance = nn.ModuleList([g for g in (guidance or []) if isinstance(g, nn.Module)])

    def encode(self, cond: Any) -> Any:
        if cond is None or self.conditioner is None:
            return cond
        return self.conditioner(cond)

    def forward(self, x_t: Any, t: torch.Tensor, cond: Any = None) -> Any:
        return self.network(x_t, t, self.encode(cond))

    def parts(self) -> dict[str, nn.Module]:
        """The named sub-modules that hold weights (``network``, ``conditioner``, ``guidance``)."""
        out = {}
        if isinstance(self.network, nn.Module):
            out["network"] = self.network
        if isinstance(self.conditioner, nn.Module):
            out["conditioner"] = self.conditioner
        if len(self.guidance):
            out["guidance"] = self.guidance
        return out
