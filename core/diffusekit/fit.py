"""The one fit check: do a process, parameterization, sampler, guidance and conditioner work
together? Used by ``Pipeline.__init__``, ``Pipeline.sample(sampler=..., guidance=...)``,
``Pipeline.load`` and the CLI, so the same pairing is accepted or refused everywhere.

Rules (each component declares its side on its base class):

1. every capability in the parameterization's, sampler's and each guidance's ``requires``
   holds for the process (an inner tuple means "any of"; for a :class:`~diffusekit.process.Product`
   a capability holds when every component has it), and none in their ``excludes`` does;
   the sampler's requirements may depend on its config (``Sampler.required_capabilities``);
2. the sampler accepts the parameterization's output (``Sampler.accepts_parameterizations``);
3. a Product process needs a parameterization, sampler and guidance that declare
   ``supports_product``;
4. each guidance's own ``check_fit(fit)``.

A refusal is a :class:`~diffusekit.errors.CompatibilityError` naming the registered
components that would fit in place of the one refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from .errors import CompatibilityError
from .process import Product, capabilities_of, capability_name, has_capability


@dataclass(frozen=True)
class Fit:
    """The components whose fit is checked (``guidance`` is a tuple, possibly empty)."""

    process: Any
    parameterization: Any
    sampler: Any
    guidance: tuple = field(default_factory=tuple)
    conditioner: Any = None

    def with_(self, **changes: Any) -> "Fit":
        return replace(self, **changes)


def _missing(requires: Sequence, process: Any) -> list[str]:
    return [capability_name(cap) for cap in requires if not has_capability(process, cap)]


def _present(excludes: Sequence, process: Any) -> list[str]:
    return [capability_name(cap) for cap in excludes if has_capability(process, cap)]


def _problem(kind: str, obj: Any, fit: Fit) -> str | None:
    """Why ``obj`` (of ``kind``) does not fit ``fit`` (None if it does); guidance check_fit excluded."""
    proc = fit.process
    pname, caps = type(proc).__name__, capabilities_of(proc)
    oname = type(obj).__name__
    if kind == "sampler":
        requires = obj.required_capabilities()
    else:
        requires = obj.requires
    miss = _missing(requires, proc)
    if miss:
        return f"{kind} {oname} needs a process with {miss}, but {pname} has {caps}"
    bad = _present(obj.excludes, proc) if kind != "parameterization" else []
    if bad:
        return f"{kind} {oname} cannot handle a {bad[0]} process ({pname})"
    if isinstance(proc, Product) and not obj.supports_product:
        return f"{kind} {oname} does not handle the per-key states of the Product process {pname}"
    if kind == "sampler" and fit.parameterization is not None:
        accepts = obj.accepts_parameterizations
        if accepts is not None and fit.parameterization.output not in accepts:
            return (f"sampler {oname} works with predictions {sorted(accepts)}, not "
                    f"{fit.parameterization.output!r}")
    if kind == "parameterization" and fit.sampler is not None:
        accepts = fit.sampler.accepts_parameterizations
        if accepts is not None and obj.output not in accepts:
            return (f"parameterization {oname} predicts {obj.output!r}, but sampler "
                    f"{type(fit.sampler).__name__} works with {sorted(accepts)}")
    return None


def fitting(kind: str, fit: Fit) -> list[str]:
    """Registered names of ``kind`` (default configs) that would fit in place of the current one."""
    from .api import create
    from .plugins import get_registry

    out = []
    for spec in get_registry().specs(kind):
        try:
            obj = create(kind, spec.name)
        except Exception:  # noqa: BLE001 - components that need parameters are not listed
            continue
        try:
            if kind == "guidance":
                if _problem(kind, obj, fit) is None:
                    obj.check_fit(fit)
                    out.append(spec.name)
            elif _problem(kind, obj, fit) is None:
                out.append(spec.name)
        except Exception:  # noqa: BLE001 - a component that does not fit (or cannot tell) is not listed
            continue
    return out


def check_fit(fit: Fit) -> None:
    """Raise :class:`CompatibilityError` naming what would fit when the components clash."""
    why = _problem("parameterization", fit.parameterization, fit.with_(sampler=None))
    if why:
        raise CompatibilityError(f"{why}; parameterizations that fit: "
                                 f"{fitting('parameterization', fit.with_(sampler=None))}")
    why = _problem("sampler", fit.sampler, fit)
    if why:
        raise CompatibilityError(f"{why}; samplers that fit: {fitting('sampler', fit)}")
    for g in fit.guidance:
        why = _problem("guidance", g, fit)
        if why:
            raise CompatibilityError(f"{why}; guidance that fits: {fitting('guidance', fit)}")
        g.check_fit(fit)


__all__ = ["Fit", "check_fit", "fitting"]


def batch_coupling(sampler, guidance) -> list[str]:
    """Why the samples of one batch depend on each other (empty: batch-invariant, so drawing
    in chunks or shards gives the same samples as one batch)."""
    reasons = []
    for g in guidance:
        if g.couples_batch:
            reasons.append(f"guidance {type(g).__name__} couples the samples of a batch (particles interact)")
    if sampler.couples_batch():
        reasons.append(f"sampler {type(sampler).__name__} couples the samples of a batch (a step size or norm "
                       "shared by the batch)")
    return reasons
