"""Conformance kit: the checks ``diffusekit check PLUGIN`` runs on each of a plugin's components.

Per kind:

* every component: its config is a pydantic model that forbids unknown keys and has a JSON
  schema;
* process, parameterization, sampler, schedule, guidance, conditioner, network, exporter,
  dataset: constructed with default parameters through the registry (a component with
  required parameters is reported as *skipped*, not failed);
* process: ``sample_time`` has shape (n,) and lies in [t_min, t_max]; ``prior`` and
  ``perturb`` keep the batch size and the per-sample structure and are finite; for
  AdditiveGaussian processes the x0 / eps / score / v conversions of ``Prediction`` round-trip
  (:func:`diffusekit.testing.check_parameterization`) and c(t) > 0 inside the time range;
* parameterization (Gaussian outputs x0 / eps / score / v): the loss on a fitting registered
  process is a finite differentiable scalar;
* sampler fitting an unconditional AdditiveGaussian process: run on the exact Gaussian-mixture
  oracle; samples finite, reported NFE equal to ``expected_nfe()``, MMD to the data below a
  loose bound, and per-sample generators give batch-invariant samples;
* schedule: ``times(process, 10)`` is float64, shape (11,), strictly decreasing.

A process whose default probe does not apply (it needs a condition, a special state) may
define ``conformance_example(n, generator) -> (x0, cond)``; the kit then uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

_PROBE_SHAPE = (3,)


@dataclass
class CheckResult:
    """One check on one component: ``status`` is ``pass``, ``fail`` or ``skip``."""

    kind: str
    name: str
    check: str
    status: str
    detail: str = ""

    def line(self) -> str:
        tag = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[self.status]
        detail = f"  ({self.detail})" if self.detail else ""
        return f"{tag}  {self.kind:<17} {self.name:<20} {self.check}{detail}"


class _Recorder:
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.results: list[CheckResult] = []

    def run(self, check: str, fn: Callable[[], Any]) -> Any:
        """Run one check; returns its value (None on failure or skip)."""
        try:
            out = fn()
        except _Skip as skip:
            self.results.append(CheckResult(self.kind, self.name, check, "skip", str(skip)))
            return None
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            self.results.append(CheckResult(self.kind, self.name, check, "fail", f"{type(exc).__name__}: {exc}"))
            return None
        detail = out if isinstance(out, str) else ""
        self.results.append(CheckResult(self.kind, self.name, check, "pass", detail))
        return out


class _Skip(Exception):
    """Raised inside a check that does not apply."""


class _ProbeNet(torch.nn.Module):
    """A tiny network ``(x, t, cond) -> tensor shaped like x`` for loss checks."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(dim + 1, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.lin(torch.cat([x, t[:, None].to(x.dtype)], dim=1))


# ----------------------------------------------------------------------------- helpers
from ..state import all_finite as _finite
from ..state import batch_size as _batch
from ..state import shape_of as _structure


def _create(kind: str, name: str) -> Any:
    from ..api import create
    from ..errors import ConfigError

    try:
        return create(kind, name)
    except ConfigError as exc:
        if "required parameter is missing" in str(exc):
            raise _Skip(f"needs parameters: {exc}") from None
        raise


def _example(process, n: int, gen: torch.Generator) -> tuple[Any, Any]:
    example = process.conformance_example(n, gen)
    if example is not None:
        return example
    return process.prior(n, _PROBE_SHAPE, generator=gen), None


def _is_plain_gaussian(process) -> bool:
    """AdditiveGaussian with b = 0 and Tensor states: the Gaussian-mixture oracle applies."""
    from ..process import AdditiveGaussian

    if not isinstance(process, AdditiveGaussian):
        return False
    try:  # processes with an endpoint y (b != 0) need a condition and refuse None
        return process.endpoint(None, torch.zeros(1, 2)) is None
    except Exception:  # noqa: BLE001
        return False


def _reference_processes(requires: Iterable, excludes: Iterable = ()) -> list[tuple[str, Any]]:
    """Registered processes (default config) that have every required capability and none
    of the excluded ones."""
    from ..api import create
    from ..plugins import get_registry
    from ..process import has_capability

    out = []
    for spec in get_registry().specs("process"):
        try:
            proc = create("process", spec.name)
        except Exception:  # noqa: BLE001 - processes needing parameters are not references
            continue
        if all(has_capability(proc, cap) for cap in requires) and not any(
                has_capability(proc, cap) for cap in excludes):
            out.append((spec.name, proc))
    # prefer the canonical VP process when it fits
    out.sort(key=lambda p: (p[0] != "vp", p[0]))
    return out


# ----------------------------------------------------------------------------- per kind
def _check_config(rec: _Recorder, spec) -> None:
    def check():
        cfg = spec.config
        if cfg is None:
            raise _Skip("no config model (component takes no parameters)")
        if not hasattr(cfg, "model_json_schema"):
            raise TypeError(f"config {cfg!r} is not a pydantic model")
        extra = cfg.model_config.get("extra")
        if extra != "forbid":
            raise ValueError(f"config {cfg.__name__} has extra={extra!r}; use ComponentConfig (extra='forbid')")
        schema = cfg.model_json_schema()
        if schema.get("additionalProperties", False) is not False:
            raise ValueError("JSON schema allows additional properties")
        return f"{len(schema.get('properties', {}))} parameters"

    rec.run("config schema (extra=forbid)", check)


def _check_process(rec: _Recorder, proc) -> None:
    from ..process import AdditiveGaussian, LieGroup, Product

    gen = torch.Generator().manual_seed(0)
    n = 6

    def times():
        t = proc.sample_time(n, gen)
        assert t.shape == (n,), f"sample_time({n}) has shape {tuple(t.shape)}, expected ({n},)"
        lo, hi = float(proc.t_min), float(proc.t_max)
        assert bool(((t >= lo - 1e-6) & (t <= hi + 1e-6)).all()), f"times outside [{lo}, {hi}]"

    rec.run("sample_time shape and range", times)

    def prior_and_perturb():
        x0, cond = _example(proc, n, gen)
        assert _batch(x0) == n, f"example / prior batch {_batch(x0)} != {n}"
        prior = proc.prior(n, _structure(x0), cond=cond, generator=gen)
        assert _batch(prior) == n and _finite(prior), "prior is not a finite batch of n states"
        t = proc.sample_time(n, gen)
        pert = proc.perturb(x0, t, cond=cond, generator=gen)
        assert _structure(pert.x_t) == _structure(x0), (
            f"perturb changed the per-sample structure {_structure(x0)} -> {_structure(pert.x_t)}")
        assert _batch(pert.x_t) == n and _finite(pert.x_t), "x_t is not a finite batch of n states"

    rec.run("prior / perturb shapes, finite", prior_and_perturb)

    if isinstance(proc, AdditiveGaussian) and not isinstance(proc, Product):
        def coefs():
            t = torch.linspace(float(proc.t_min), float(proc.t_max), 33, dtype=torch.float64)
            a, b, c = proc.coefficients(t)
            assert all(bool(torch.isfinite(v).all()) for v in (a, b, c)), "non-finite a, b or c"
            # bridges may pin an end (c = 0 there); inside the range the noise must be positive
            assert bool((c >= 0).all()) and bool((c[1:-1] > 0).all()), "c(t) must be > 0 inside (t_min, t_max)"

        rec.run("AdditiveGaussian coefficients finite, c > 0 inside", coefs)
        rec.run("x0/eps/score/v round trip", lambda: _round_trip(proc))
    if isinstance(proc, LieGroup):
        rec.run("Lie group: exp/log, hat/vee, compose/inverse, geodesic", lambda: _lie_group(proc))
        rec.run("Lie group: prior and perturb stay on the group", lambda: _on_group(proc))
    if isinstance(proc, Product):
        rec.run("Product: one component per state key", lambda: _product(proc))


def _lie_group(proc, atol: float = 1e-6) -> str:
    """Group identities in float64 at random algebra points (angles below pi)."""
    gen = torch.Generator().manual_seed(0)
    d = int(proc.algebra_dim)
    xi = torch.randn(16, d, generator=gen, dtype=torch.float64)
    xi = xi / xi.norm(dim=-1, keepdim=True).clamp_min(1e-12) * torch.rand(16, 1, generator=gen, dtype=torch.float64) * 2.5
    xi[0] = 0.0                       # identity
    xi[1] = xi[1] * 1e-9              # small-angle branch
    g = proc.exp(xi)
    eye = proc.identity((16,), dtype=torch.float64)
    err = {
        "log(exp(xi)) = xi": (proc.log(g) - xi).abs().max(),
        "vee(hat(xi)) = xi": (proc.vee(proc.hat(xi)) - xi).abs().max(),
        "exp(0) = identity": (proc.exp(torch.zeros(1, d, dtype=torch.float64)) - eye[:1]).abs().max(),
        "g g^-1 = identity": (proc.compose(g, proc.inverse(g)) - eye).abs().max(),
        "exp(log(g)) = g": (proc.exp(proc.log(g)) - g).abs().max(),
    }
    h = proc.exp(torch.randn(16, d, generator=gen, dtype=torch.float64) * 0.5)
    err["geodesic(g, h, 0) = g"] = (proc.geodesic(g, h, 0.0) - g).abs().max()
    err["geodesic(g, h, 1) = h"] = (proc.geodesic(g, h, 1.0) - h).abs().max()
    worst = max(float(v) for v in err.values())
    bad = [k for k, v in err.items() if float(v) > atol]
    assert not bad, f"{bad} fail (errors {[f'{float(err[k]):.1e}' for k in bad]})"
    return f"max error {worst:.1e}"


def _on_group(proc, atol: float = 1e-4) -> None:
    """The prior and perturbed states are group elements: log then exp gives them back."""
    gen = torch.Generator().manual_seed(1)
    x0, cond = _example(proc, 6, gen)
    t = proc.sample_time(6, gen)
    for name, g in (("prior", proc.prior(6, _structure(x0), cond=cond, generator=gen)),
                    ("x_t", proc.perturb(x0, t, cond=cond, generator=gen).x_t)):
        g64 = g.to(torch.float64)
        err = float((proc.exp(proc.log(g64)) - g64).abs().max())
        assert err < atol, f"{name} is not on the group: exp(log(g)) differs by {err:.1e}"


def _product(proc) -> str:
    gen = torch.Generator().manual_seed(2)
    x0, cond = _example(proc, 4, gen)
    assert isinstance(x0, dict) and set(x0) == set(proc.components), (
        f"state keys {sorted(x0) if isinstance(x0, dict) else type(x0).__name__} != components "
        f"{sorted(proc.components)}")
    pert = proc.perturb(x0, proc.sample_time(4, gen), cond=cond, generator=gen)
    assert set(pert.x_t) == set(proc.components), "perturb lost a key"
    return f"keys {sorted(proc.components)}"


def _round_trip(proc, atol: float = 1e-5) -> str:
    """x_t = a x0 + b y + c eps at interior times; Prediction conversions from each of x0,
    eps, score, v must give back x0 and eps (float64)."""
    from ..parameterization import Prediction
    from ..process import bcast

    gen = torch.Generator().manual_seed(0)
    if proc.conformance_example(1, gen) is None and not _is_plain_gaussian(proc):
        raise _Skip("the process needs a condition (b != 0): define conformance_example(n, generator)")
    x0, cond = _example(proc, 8, gen)
    if not torch.is_tensor(x0):
        raise _Skip("dict states: no generic round trip")
    x0 = x0.to(torch.complex128 if x0.is_complex() else torch.float64)
    cond = cond.to(x0.dtype) if torch.is_tensor(cond) else cond
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64).to(x0.dtype)
    lo, hi = float(proc.t_min), float(proc.t_max)
    t = torch.linspace(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo), x0.shape[0], dtype=torch.float64)
    a, b, c = proc.coefficients(t)
    x_t = bcast(a, x0) * x0 + bcast(c, x0) * eps
    y = proc.endpoint(cond, x0)
    if y is not None:
        x_t = x_t + bcast(b, x0) * y
    ref = Prediction(proc, x_t, t, cond, x0=x0, eps=eps)
    worst = 0.0
    for kind in ("x0", "eps", "score", "v"):
        other = Prediction(proc, x_t, t, cond, **{kind: ref.get(kind)})
        for k2 in ("x0", "eps"):
            err = float((other.get(k2) - ref.get(k2)).abs().max())
            worst = max(worst, err)
            assert err < atol, f"{kind} -> {k2} round trip error {err:.3g}"
    return f"max error {worst:.1e}"


def _check_parameterization(rec: _Recorder, param) -> None:
    from ..denoiser import Denoiser

    if param.output not in ("x0", "eps", "score", "v"):
        rec.run("loss finite and differentiable",
                lambda: (_ for _ in ()).throw(_Skip(f"no generic probe for output {param.output!r}")))
        return

    def loss():
        refs = [(n, p) for n, p in _reference_processes(param.requires) if _is_plain_gaussian(p)]
        if not refs:
            raise _Skip("no registered unconditional AdditiveGaussian process fits")
        pname, proc = refs[0]
        net = _ProbeNet(_PROBE_SHAPE[0])
        x0 = torch.randn(32, *_PROBE_SHAPE, generator=torch.Generator().manual_seed(0))
        value = param.loss(Denoiser(net, param, proc), x0, None, torch.Generator().manual_seed(1))
        assert value.ndim == 0, f"loss has shape {tuple(value.shape)}, expected a scalar"
        assert bool(torch.isfinite(value)), f"loss is {float(value)}"
        value.backward()
        assert net.lin.weight.grad is not None, "loss does not depend on the network"
        return f"on process {pname!r}"

    rec.run("loss finite and differentiable", loss)


def _check_sampler(rec: _Recorder, name: str, sampler) -> None:
    from ..pipeline import Pipeline
    from .metrics import mmd
    from .oracles import GaussianMixture, MixtureOracle

    refs = [(n, p) for n, p in _reference_processes(sampler.required_capabilities(), sampler.excludes)
            if _is_plain_gaussian(p)]
    if not refs:
        rec.run("oracle sampling", lambda: (_ for _ in ()).throw(
            _Skip("no registered unconditional AdditiveGaussian process fits its requirements")))
        return
    pname, proc = refs[0]
    gm = GaussianMixture.ring(k=4, radius=1.0, std=0.15)
    accepts = sampler.accepts_parameterizations
    param = "x0" if accepts is None or "x0" in accepts else sorted(accepts)[0]

    def pipe():
        return Pipeline(process=proc, network=MixtureOracle(gm, proc), parameterization=param,
                        sampler=sampler, sample_shape=(gm.dim,))

    def quality():
        p = pipe()
        x = p.sample(400, generator=torch.Generator().manual_seed(0))
        assert _finite(x), "samples contain NaN / Inf"
        expected = sampler.expected_nfe()
        if expected is not None:
            assert p.last_nfe == expected, f"reported NFE {p.last_nfe} != expected_nfe() {expected}"
        ref = gm.sample(400, torch.Generator().manual_seed(1))
        value = mmd(x, ref)
        assert value < 0.05, f"MMD to the oracle's data {value:.4f} >= 0.05"
        return f"process {pname!r}, NFE {p.last_nfe}, MMD {value:.4f}"

    rec.run("oracle sampling: finite, honest NFE, MMD", quality)

    def invariance():
        # Adaptive solvers share one step size over the batch, so samples couple at the
        # solver's tolerance; fixed-step samplers must agree to float round-off.
        adaptive = sampler.expected_nfe() is None
        tol = 1e-2 if adaptive else 1e-4
        p = pipe()
        big = p.sample(4, generator=[torch.Generator().manual_seed(s) for s in range(4)])
        small = p.sample(2, generator=[torch.Generator().manual_seed(s) for s in range(2)])
        err = float((big[:2] - small).abs().max())
        assert err < tol, f"sample 0-1 changed by {err:.2e} when the batch grew (per-sample generators)"
        return f"max change {err:.1e}" + (" (adaptive: tolerance 1e-2)" if adaptive else "")

    rec.run("batch-invariant per-sample generators", invariance)


def _check_schedule(rec: _Recorder, grid) -> None:
    def times():
        refs = _reference_processes(grid.requires)
        if not refs:
            raise _Skip("no registered process fits")
        pname, proc = refs[0]
        t = grid.times(proc, 10)
        assert t.dtype == torch.float64, f"dtype {t.dtype}, expected float64"
        assert t.shape == (11,), f"shape {tuple(t.shape)}, expected (11,)"
        assert bool((t[1:] < t[:-1]).all()), "times are not strictly decreasing"
        return f"on process {pname!r}"

    rec.run("times: float64, (steps+1,), decreasing", times)


def _check_network(rec: _Recorder, net) -> None:
    def call():
        if not isinstance(net, torch.nn.Module):
            raise _Skip("not a torch.nn.Module")
        from ..network import network_example, network_sample_shape

        example = network_example(net, 3)
        shape = network_sample_shape(net)
        if example is not None:
            x, t, cond = example
        elif shape is not None:
            x, t, cond = torch.randn(3, *shape), torch.full((3,), 0.5), None
        else:
            raise _Skip("neither example_inputs(batch) nor sample_shape: no generic probe input")
        with torch.no_grad():
            out = net(x, t, cond)
        assert _structure(out) == _structure(x) and _batch(out) == _batch(x), (
            f"output shape {_structure(out)} != input shape {_structure(x)} (batch {_batch(out)} vs {_batch(x)})")
        assert _finite(out), "output is not finite"

    rec.run("network(x, t) keeps the shape", call)


_CONSTRUCT = ("process", "parameterization", "sampler", "schedule", "guidance", "conditioner", "network",
              "exporter")


def check_component(spec) -> list[CheckResult]:
    """Run every applicable check on one registered component (never raises)."""
    rec = _Recorder(spec.kind, spec.name)
    try:
        _check_component(rec, spec)
    except Exception as exc:  # noqa: BLE001 - a crash in the kit itself is reported as a failure
        rec.results.append(CheckResult(spec.kind, spec.name, "conformance kit", "fail",
                                       f"{type(exc).__name__}: {exc}"))
    return rec.results


def _check_component(rec: _Recorder, spec) -> None:
    _check_config(rec, spec)
    if spec.kind in _CONSTRUCT:
        obj = rec.run("construct with defaults", lambda: _create(spec.kind, spec.name))
        if obj is not None:
            checker = {
                "process": _check_process,
                "parameterization": _check_parameterization,
                "schedule": _check_schedule,
                "network": _check_network,
            }.get(spec.kind)
            if checker is not None:
                checker(rec, obj)
            elif spec.kind == "sampler":
                _check_sampler(rec, spec.name, obj)
    elif spec.kind == "recipe":
        def recipe():
            cfg = _create("recipe", spec.name)
            assert isinstance(cfg, dict) and "process" in cfg, "a recipe must be a dict with a 'process' entry"

        rec.run("recipe is a pipeline config", recipe)
    elif spec.kind == "command":
        rec.run("command is callable", lambda: None if callable(spec.obj) else (_ for _ in ()).throw(
            TypeError("registered command is not callable")))


def check_object(kind: str, obj: Any, name: str = "") -> list[CheckResult]:
    """Run the per-kind checks on an already constructed component (e.g. one defined in a
    test file and never registered); never raises."""
    rec = _Recorder(kind, name or type(obj).__name__)
    checker = {"process": _check_process, "parameterization": _check_parameterization,
               "schedule": _check_schedule, "network": _check_network}.get(kind)
    try:
        if checker is not None:
            checker(rec, obj)
        elif kind == "sampler":
            _check_sampler(rec, rec.name, obj)
        else:
            raise ValueError(f"no checks for kind {kind!r}")
    except Exception as exc:  # noqa: BLE001
        rec.results.append(CheckResult(kind, rec.name, "conformance kit", "fail", f"{type(exc).__name__}: {exc}"))
    return rec.results


def run_checks(plugin: str) -> list[CheckResult]:
    """Checks for every component of the plugin called ``plugin`` (entry-point or distribution
    name). A plugin that failed to load yields one failed ``load`` result."""
    from ..plugins import get_manager

    manager = get_manager()
    infos = [i for i in manager.plugin_infos() if plugin in (i.name, i.distribution)]
    if not infos:
        names = sorted(i.name for i in manager.plugin_infos())
        return [CheckResult("plugin", plugin, "load", "fail", f"no plugin called {plugin!r}; plugins: {names}")]
    results: list[CheckResult] = []
    for info in infos:
        if info.status != "loaded":
            results.append(CheckResult("plugin", info.name, "load", "fail", f"{info.status}: {info.error}"))
            continue
        results.append(CheckResult("plugin", info.name, "load", "pass", f"{len(info.components)} components"))
        for kind, name in info.components:
            results.extend(check_component(manager.registry.get(kind, name)))
    return results


def check_plugin(name: str, verbose: bool = False) -> bool:
    """Run the conformance kit on a plugin; True when nothing failed (skips are fine)."""
    results = run_checks(name)
    if verbose:
        for r in results:
            print(r.line())
        counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
        print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return not any(r.status == "fail" for r in results)
