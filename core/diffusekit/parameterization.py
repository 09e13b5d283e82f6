"""Parameterizations: what the network predicts, and conversion into a :class:`Prediction`.

For an AdditiveGaussian process write z = x_t - b(t) y = a x0 + c eps and r = sqrt(a^2 + c^2).
Then (lazily, from whichever quantity the network produced):

* x0 = (z - c eps) / a,            eps = (z - a x0) / c
* score = grad log p(x_t | x0) = -eps / c
* v = (a eps - c x0) / r  (Salimans & Ho 2022, generalised to any a, c);
  x0 = (a z / r - c v) / r, eps = (c z / r + a v) / r.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch

from . import state as st
from .config import Component
from .process import AdditiveGaussian, ForwardProcess, Product, bcast

_GAUSSIAN = ("x0", "eps", "score", "v")


class Prediction:
    """A network output with lazy conversions between x0, eps, score and v.

    Non-Gaussian predictions (``logits``, per-key dicts, poses) are stored as given under
    their own names and returned unchanged.
    """

    #: x0 and eps were given separately and need not satisfy x_t = a x0 + b y + c eps (CFG++:
    #: guided x0, unconditional eps); samplers with ``renoise_eps`` then re-noise with
    #: a x0 + c eps instead of the state. Set on the instance by the guidance that makes it.
    renoises: bool = False

    def __init__(self, process: ForwardProcess, x_t: Any, t: torch.Tensor, cond: Any = None, **given: Any):
        self.process = process
        self.x_t = x_t
        self.t = t
        self.cond = cond
        self._values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if not self._values:
            raise ValueError("Prediction needs at least one predicted quantity")

    @property
    def kinds(self) -> list[str]:
        return list(self._values)

    def has(self, kind: str) -> bool:
        """Whether ``kind`` was given (or already derived), so ``get`` needs no conversion."""
        return kind in self._values

    def _coefs(self):
        a, b, c = self.process.coefficients(self.t)
        x = self.x_t
        z = x
        y = self.process.endpoint(self.cond, x) if isinstance(self.process, AdditiveGaussian) else None
        if y is not None:
            z = x - bcast(b, x) * y
        return bcast(a, x), bcast(c, x), z

    def component(self, key: str) -> "Prediction":
        """The prediction of one key of a :class:`~diffusekit.process.Product` process."""
        proc = self.process.components[key]
        vals = {k: v[key] for k, v in self._values.items() if isinstance(v, dict)}
        return Prediction(proc, self.x_t[key], self.t, self.cond, **vals)

    def get(self, kind: str) -> Any:
        if kind in self._values:
            return self._values[kind]
        if isinstance(self.process, Product) and isinstance(self.x_t, dict):
            if not any(isinstance(v, dict) for v in self._values.values()):
                raise KeyError(f"prediction of a Product process holds {self.kinds}, none of them per key")
            out = {k: self.component(k).get(kind) for k in self.process.components}
            self._values[kind] = out
            return out
        if kind not in _GAUSSIAN or not any(k in self._values for k in _GAUSSIAN):
            raise KeyError(f"prediction has {self.kinds}; cannot derive {kind!r} from them")
        if not isinstance(self.process, AdditiveGaussian):
            raise TypeError(f"converting predictions to {kind!r} needs an AdditiveGaussian process")
        a, c, z = self._coefs()
        vals = self._values
        if "x0" not in vals:
            if "eps" in vals:
                vals["x0"] = (z - c * vals["eps"]) / a
            elif "score" in vals:
                vals["eps"] = -c * vals["score"]
                vals["x0"] = (z - c * vals["eps"]) / a
            elif "v" in vals:
                r = torch.sqrt(a * a + c * c)
                vals["x0"] = (a * z / r - c * vals["v"]) / r
                vals["eps"] = (c * z / r + a * vals["v"]) / r
        if kind == "x0":
            return vals["x0"]
        if "eps" not in vals:
            vals["eps"] = (z - a * vals["x0"]) / c
        if kind == "eps":
            return vals["eps"]
        if kind == "score":
            vals["score"] = -vals["eps"] / c
            return vals["score"]
        r = torch.sqrt(a * a + c * c)
        vals["v"] = (a * vals["eps"] - c * vals["x0"]) / r
        return vals["v"]

    @property
    def x0(self):
        return self.get("x0")

    @property
    def eps(self):
        return self.get("eps")

    @property
    def score(self):
        return self.get("score")

    @property
    def v(self):
        return self.get("v")

    @property
    def logits(self):
        return self.get("logits")

    def __repr__(self) -> str:
        return f"Prediction({', '.join(self.kinds)})"


class Parameterization(Component):
    """Maps a network output to a :class:`Prediction` and defines the training loss."""

    #: capabilities the process must have (an entry that is a tuple means "any of these")
    requires: tuple = ()
    #: name of the quantity the raw network output is
    output: str = "x0"
    #: handles the dict states of a Product process (per-key outputs and losses)
    supports_product: bool = False

    def check_output(self, raw: Any, x_t: Any) -> None:
        """Raise :class:`~diffusekit.errors.ShapeError` when a raw network output cannot be this
        parameterization's target for ``x_t``. The denoiser calls it on its first network
        evaluation (shapes only, no device sync). Default: the output has ``x_t``'s structure,
        shapes and dtypes; parameterizations whose output differs (e.g. logits) override it."""
        st.check_like(raw, x_t, "network output")

    def predict(self, network, process: ForwardProcess, x_t: Any, t: torch.Tensor, cond: Any = None,
                net_cond: Any = None) -> Prediction:
        """Call the network (``network(x_t, t, cond)``) and wrap its output."""
        raw = network(x_t, t, net_cond)
        return Prediction(process, x_t, t, cond, **{self.output: raw})

    @abstractmethod
    def loss(self, denoiser, x0: Any, cond: Any = None, generator=None) -> torch.Tensor:
        """Differentiable scalar training loss for a batch x0."""
