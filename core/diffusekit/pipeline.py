"""The Pipeline: composes process, parameterization, network, conditioner, guidance and
sampler; checks at construction that they fit; trains (``loss``), samples, evaluates
likelihoods and saves / loads itself."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from .api import create, spec_of
from .conditioner import Conditioner
from .denoiser import Denoiser
from .errors import CompatibilityError, ConfigError, NonFiniteError, ShapeError
from .guidance import Guidance
from .parameterization import Parameterization
from .plugins import get_registry
from .process import ForwardProcess, capabilities_of
from .random import as_generators
from .sampler import FiniteTracker, Sampler

COMPONENT_KINDS = ("process", "parameterization", "network", "sampler", "guidance", "conditioner")


@dataclass
class SamplingResult:
    """Returned by ``Pipeline.sample(..., return_trajectory=True)``."""

    sample: Any
    trajectory: list
    nfe: int
    seconds: float


def _resolve(kind: str, value: Any, base: type | None = None) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, dict)):
        return create(kind, value, loc=kind)
    if base is not None and not isinstance(value, base):
        raise ConfigError(
            f"expected a {base.__name__}, a registered {kind} name or a {{'name': ...}} dict, "
            f"got {type(value).__name__}", loc=kind,
        )
    return value


def _batch_of(x: Any) -> int | None:
    if torch.is_tensor(x):
        return x.shape[0] if x.ndim else None
    if isinstance(x, dict):
        for v in x.values():
            b = _batch_of(v)
            if b is not None:
                return b
    return None


def _is_state(x: Any) -> bool:
    return torch.is_tensor(x) or (isinstance(x, dict) and bool(x) and all(torch.is_tensor(v) for v in x.values()))


def _first_tensor(x: Any) -> torch.Tensor:
    return x if torch.is_tensor(x) else next(iter(x.values()))


def _all_finite(x: Any) -> bool:
    """True unless a floating / complex tensor of the state holds NaN or Inf (one host sync)."""
    if not _is_state(x):
        return True
    tensors = [v for v in ([x] if torch.is_tensor(x) else x.values()) if v.is_floating_point() or v.is_complex()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(v).all() for v in tensors]).all())


def check_cond(cond: Any, n: int, loc: str = "cond") -> None:
    """A Tensor (or dict of Tensors) condition must have one entry per sample."""
    if cond is None:
        return
    tensors = {loc: cond} if torch.is_tensor(cond) else (
        {f"{loc}.{k}": v for k, v in cond.items() if torch.is_tensor(v)} if isinstance(cond, dict) else {})
    for where, v in tensors.items():
        if v.ndim == 0 or v.shape[0] != n:
            raise ShapeError(
                f"{where}: condition has shape {tuple(v.shape)} but the batch has {n} samples; "
                f"give one condition per sample (first dimension {n})")


def _missing(requires: Sequence[type], process: Any) -> list[str]:
    return [cap.__name__ for cap in requires if not isinstance(process, cap)]


class Pipeline:
    """A composed diffusion-family model. See ``docs/architecture.md``."""

    def __init__(self, process, network, parameterization=None, sampler=None, guidance=None,
                 conditioner=None, sample_shape: Sequence[int] | None = None,
                 buffers: dict[str, torch.Tensor] | None = None):
        self.process: ForwardProcess = _resolve("process", process, ForwardProcess)
        if parameterization is None:
            parameterization = getattr(self.process, "default_parameterization", None)
            if parameterization is None:
                raise ConfigError(
                    f"no parameterization given and {type(self.process).__name__} has no default; "
                    f"choose one of {get_registry().names('parameterization')}", loc="parameterization")
        self.parameterization: Parameterization = _resolve("parameterization", parameterization, Parameterization)
        self.network: nn.Module = _resolve("network", network)
        if self.network is None or not callable(self.network):
            raise ConfigError("a network (torch.nn.Module called as network(x_t, t, cond)) is required",
                              loc="network")
        self.conditioner: Conditioner | None = _resolve("conditioner", conditioner, nn.Module)
        if isinstance(guidance, (list, tuple)):
            self.guidance: list[Guidance] = [_resolve("guidance", g, Guidance) for g in guidance]
        else:
            self.guidance = [] if guidance is None else [_resolve("guidance", guidance, Guidance)]
        self.sampler: Sampler = _resolve("sampler", sampler, Sampler) if sampler is not None else self._default_sampler()
        self.sample_shape = tuple(sample_shape) if sample_shape is not None else getattr(self.network, "sample_shape", None)
        self.buffers: dict[str, torch.Tensor] = dict(buffers or {})
        self.last_nfe: int | None = None
        self.check_fit()

    # -- composition checks -------------------------------------------------------------
    def _fitting(self, kind: str) -> list[str]:
        reg = get_registry()
        out = []
        for spec in reg.specs(kind):
            req = getattr(spec.obj, "requires", ())
            if isinstance(spec.obj, type) and not _missing(req, self.process):
                out.append(spec.name)
        return out

    def _default_sampler(self) -> Sampler:
        reg = get_registry()
        for name in getattr(self.process, "preferred_samplers", ()):
            if ("sampler", name) in reg:
                return create("sampler", name, loc="sampler")
        fitting = self._fitting("sampler")
        if fitting:
            return create("sampler", fitting[0], loc="sampler")
        raise CompatibilityError(
            f"no registered sampler fits process {type(self.process).__name__} "
            f"(capabilities {capabilities_of(self.process)}); install a plugin that provides one")

    def check_fit(self) -> None:
        """Raise :class:`CompatibilityError` naming what would fit when components clash."""
        proc = self.process
        pname = type(proc).__name__
        caps = capabilities_of(proc)
        miss = _missing(self.parameterization.requires, proc)
        if miss:
            raise CompatibilityError(
                f"parameterization {type(self.parameterization).__name__} needs a process with {miss}, "
                f"but {pname} has {caps}; parameterizations that fit: {self._fitting('parameterization')}")
        miss = _missing(self.sampler.requires, proc)
        if miss:
            raise CompatibilityError(
                f"sampler {type(self.sampler).__name__} needs a process with {miss}, but {pname} has "
                f"{caps}; samplers that fit: {self._fitting('sampler')}")
        accepts = getattr(self.sampler, "accepts_parameterizations", None)
        if accepts is not None and self.parameterization.output not in accepts:
            fits = [s.name for s in get_registry().specs("parameterization")
                    if getattr(s.obj, "output", None) in accepts and not _missing(getattr(s.obj, "requires", ()), proc)]
            raise CompatibilityError(
                f"sampler {type(self.sampler).__name__} works with predictions {sorted(accepts)}, "
                f"not {self.parameterization.output!r}; parameterizations that fit: {fits}")
        for g in self.guidance:
            miss = _missing(g.requires, proc)
            if miss:
                raise CompatibilityError(
                    f"guidance {type(g).__name__} needs a process with {miss}, but {pname} has {caps}; "
                    f"guidance that fits: {self._fitting('guidance')}")
            check = getattr(g, "check_fit", None)
            if check is not None:
                check(self)

    # -- modules and devices ------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        out = {}
        if isinstance(self.network, nn.Module):
            out["network"] = self.network
        if isinstance(self.conditioner, nn.Module):
            out["conditioner"] = self.conditioner
        return out

    def parameters(self):
        for m in self.modules().values():
            yield from m.parameters()

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def to(self, device) -> "Pipeline":
        for m in self.modules().values():
            m.to(device)
        self.buffers = {k: v.to(device) for k, v in self.buffers.items()}
        return self

    def train(self, mode: bool = True) -> "Pipeline":
        for m in self.modules().values():
            m.train(mode)
        return self

    def eval(self) -> "Pipeline":
        return self.train(False)

    def denoiser(self, guided: bool = True, network=None):
        """The (optionally guided) denoiser; ``network`` overrides (e.g. a DDP wrapper)."""
        d = Denoiser(network if network is not None else self.network, self.parameterization,
                     self.process, self.conditioner)
        d.buffers = self.buffers
        if guided:
            for g in self.guidance:
                d = g.wrap(d, self.conditioner)
        return d

    # -- training ---------------------------------------------------------------------------
    def loss(self, x0: Any, cond: Any = None, generator=None, network=None) -> torch.Tensor:
        """Differentiable scalar loss for a batch of data (conditioner dropout applied)."""
        self.process.check_state(x0, self.sample_shape, loc="x0")
        n = _batch_of(x0)
        if not n:
            raise ShapeError("x0: expected a non-empty batch (first dimension >= 1)")
        check_cond(cond, n)
        if cond is not None and self.conditioner is not None:
            cond = self.conditioner.drop(cond, generator)
        return self.parameterization.loss(self.denoiser(guided=False, network=network), x0, cond, generator)

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, cond: Any = None, generator=None, *, progress: bool = False,
               callback=None, return_trajectory: bool = False, x_init: Any = None,
               sampler: Any = None, device=None):
        """Draw ``n`` samples. ``generator``: one Generator, one per sample, or int seeds.

        Returns the samples, or a :class:`SamplingResult` with the trajectory and NFE when
        ``return_trajectory``. ``self.last_nfe`` always holds the network evaluations used.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer (number of samples), got {n!r}", loc="n")
        check_cond(cond, n)
        if x_init is not None and _batch_of(x_init) != n:
            raise ShapeError(f"x_init: batch {_batch_of(x_init)} != n = {n}")
        sampler = _resolve("sampler", sampler, Sampler) if sampler is not None else self.sampler
        if sampler is not self.sampler:
            miss = _missing(sampler.requires, self.process)
            if miss:
                raise CompatibilityError(f"sampler {type(sampler).__name__} needs {miss}; samplers that fit: "
                                         f"{self._fitting('sampler')}")
        try:
            gens = as_generators(generator, n if isinstance(generator, (list, tuple)) else None)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc), loc="generator") from None
        device = torch.device(device) if device is not None else self.device
        if x_init is None:
            if self.sample_shape is None:
                raise ConfigError("sample_shape is unknown: pass sample_shape=... to Pipeline or train it first",
                                  loc="sample_shape")
            x_init = self.process.prior(n, self.sample_shape, cond=cond, generator=gens, device=device)
        for g in self.guidance:
            g.bind(cond)
        denoiser = self.denoiser()
        denoiser.reset_nfe()
        trajectory: list = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=getattr(sampler.config, "steps", None),  # one update per step callback
                       desc=f"sampling ({type(sampler).__name__})", leave=False, disable=None)
        hooks = [g for g in self.guidance if type(g).on_step is not Guidance.on_step]
        # Backstop for samplers that do not track non-finite states themselves: the first
        # bad step is recorded on the device and reported once at the end (no per-step sync).
        trackers: list[FiniteTracker] = []

        def _callback(info):
            x = info["x"]
            for g in hooks:
                x = g.on_step(x, info)
            info["x"] = x
            if _is_state(x):
                if not trackers:
                    trackers.append(FiniteTracker(_first_tensor(x).device))
                trackers[0].update(x, int(info.get("i", 0)))
            if return_trajectory:
                trajectory.append(x.detach().cpu().clone() if torch.is_tensor(x) else
                                  {k: v.detach().cpu().clone() for k, v in x.items()})
            if bar is not None:
                bar.update(1)
            if callback is not None:
                out = callback(info)
                if out is not None:
                    x = out
            return x

        start = time.perf_counter()
        was_training = [m.training for m in self.modules().values()]
        self.eval()
        try:
            grad = any(g.needs_grad for g in self.guidance)
            with torch.set_grad_enabled(grad):
                out = sampler.sample(denoiser, self.process, x_init, cond=cond, generator=gens, callback=_callback)
        finally:
            for m, mode in zip(self.modules().values(), was_training):
                m.train(mode)
            if bar is not None:
                bar.close()
        self.last_nfe = denoiser.nfe
        if trackers:
            trackers[0].check(f"sampler {type(sampler).__name__}")
        if not _all_finite(out):
            raise NonFiniteError(f"sampler {type(sampler).__name__}: the final state is NaN/Inf; check the "
                                 "network output and the time grid's end point", step=None)
        if return_trajectory:
            return SamplingResult(out, trajectory, denoiser.nfe, time.perf_counter() - start)
        return out

    # -- likelihood -------------------------------------------------------------------------
    def log_likelihood(self, x: Any, cond: Any = None, **kwargs) -> torch.Tensor:
        """Per-sample log-likelihood (nats) where the process supports it."""
        fn = getattr(self.process, "log_likelihood", None)
        if fn is None:
            raise CompatibilityError(
                f"{type(self.process).__name__} provides no log_likelihood; processes with a "
                "probability-flow ODE (vp, subvp, ve) or an ELBO (masked) do")
        self.eval()
        return fn(self.denoiser(guided=False), x, cond=cond, **kwargs)

    # -- config and persistence -------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """``{kind: {"name": ..., **params}}`` that rebuilds this pipeline via from_config."""
        cfg: dict[str, Any] = {}
        for kind in ("process", "parameterization", "network", "sampler", "conditioner"):
            obj = getattr(self, kind)
            cfg[kind] = None if obj is None else spec_of(obj, kind)
        cfg["guidance"] = [spec_of(g, "guidance") for g in self.guidance] or None
        cfg["sample_shape"] = list(self.sample_shape) if self.sample_shape is not None else None
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides) -> "Pipeline":
        if not isinstance(config, dict):
            raise ConfigError(f"pipeline config must be a dict, got {type(config).__name__}")
        allowed = set(COMPONENT_KINDS) | {"sample_shape"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            import difflib

            hints = {u: difflib.get_close_matches(u, sorted(allowed), n=1) for u in unknown}
            detail = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
            raise ConfigError(f"unknown pipeline keys {detail}; allowed: {sorted(allowed)}", loc=unknown[0])
        if "process" not in config or config.get("network") is None and "network" not in overrides:
            missing = [k for k in ("process", "network") if config.get(k) is None and k not in overrides]
            raise ConfigError(f"pipeline config needs {missing}", loc=missing[0] if missing else "")
        merged = {**config, **overrides}
        return cls(**merged)

    def save(self, directory) -> None:
        from .io import save_pipeline

        save_pipeline(self, directory)

    @classmethod
    def load(cls, directory, backend: str = "torch", network=None, device=None, **kwargs) -> "Pipeline":
        from .io import load_pipeline

        return load_pipeline(directory, backend=backend, network=network, device=device, **kwargs)

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)!r}" for k in ("process", "parameterization", "sampler")]
        return f"Pipeline({', '.join(parts)}, network={type(self.network).__name__})"
