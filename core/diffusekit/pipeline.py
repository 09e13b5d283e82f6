"""The Pipeline: composes process, parameterization, network, conditioner, guidance and
sampler; checks at construction that they fit; trains (``loss``), samples, evaluates
likelihoods and saves / loads itself."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import state as st
from .api import create, spec_of
from .conditioner import Conditioner
from .denoiser import Denoiser
from .errors import CompatibilityError, ConfigError, NonFiniteError, ShapeError
from .fit import Fit, check_fit, fitting
from .guidance import Guidance
from .network import PipelineModule, network_sample_shape
from .parameterization import Parameterization
from .process import ForwardProcess, Likelihood, capabilities_of
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


class Pipeline:
    """A composed diffusion-family model. See ``docs/architecture.md``.

    The network, the conditioner and any learned guidance parts live in one ``nn.Module``,
    :attr:`model` (a :class:`~diffusekit.network.PipelineModule`), so that EMA, DDP,
    dtype / device moves, save / load and export treat them alike.
    """

    def __init__(self, process, network, parameterization=None, sampler=None, guidance=None,
                 conditioner=None, sample_shape=None, buffers: dict[str, torch.Tensor] | None = None):
        self.process: ForwardProcess = _resolve("process", process, ForwardProcess)
        if parameterization is None:
            parameterization = self.process.default_parameterization
            if parameterization is None:
                from .plugins import get_registry

                raise ConfigError(
                    f"no parameterization given and {type(self.process).__name__} has no default; "
                    f"choose one of {get_registry().names('parameterization')}", loc="parameterization")
        self.parameterization: Parameterization = _resolve("parameterization", parameterization, Parameterization)
        net = _resolve("network", network)
        if net is None or not callable(net):
            raise ConfigError("a network (torch.nn.Module called as network(x_t, t, cond)) is required",
                              loc="network")
        cond_mod: Conditioner | None = _resolve("conditioner", conditioner, Conditioner)
        if isinstance(guidance, (list, tuple)):
            self.guidance: list[Guidance] = [_resolve("guidance", g, Guidance) for g in guidance]
        else:
            self.guidance = [] if guidance is None else [_resolve("guidance", guidance, Guidance)]
        self.model = PipelineModule(net, cond_mod, self.guidance)
        self.sampler: Sampler = _resolve("sampler", sampler, Sampler) if sampler is not None else self._default_sampler()
        shape = sample_shape if sample_shape is not None else network_sample_shape(net)
        self.sample_shape = st.normalize_shape(shape)
        self.buffers: dict[str, torch.Tensor] = dict(buffers or {})
        #: JSON facts about the run saved beside the config (e.g. ``data``: the registered
        #: dataset spec it was trained on, used to draw held-out data)
        self.metadata: dict[str, Any] = {}
        self.last_nfe: int | None = None
        #: the guidance copies bound to the last ``sample`` call (their per-call results,
        #: e.g. SMC log-weights, live there; the configured objects are never mutated)
        self.last_guidance: list[Guidance] = []
        self.check_fit()

    # -- the module's parts -----------------------------------------------------------------
    @property
    def network(self):
        return self.model.network

    @network.setter
    def network(self, value) -> None:
        self.model.network = value

    @property
    def conditioner(self):
        return self.model.conditioner

    @conditioner.setter
    def conditioner(self, value) -> None:
        self.model.conditioner = value

    # -- composition checks -------------------------------------------------------------
    def fit(self, sampler: Sampler | None = None, guidance: list[Guidance] | None = None) -> Fit:
        """The components whose fit :func:`diffusekit.fit.check_fit` checks (with overrides)."""
        return Fit(self.process, self.parameterization, sampler if sampler is not None else self.sampler,
                   tuple(self.guidance if guidance is None else guidance), self.conditioner)

    def call_components(self, sampler: Any = None, guidance: Any = None) -> tuple[Sampler, list[Guidance]]:
        """The sampler and guidance of one sampling call: the pipeline's own, or the given
        overrides (objects, names or specs), which pass the same fit check as construction."""
        resolved = _resolve("sampler", sampler, Sampler) if sampler is not None else self.sampler
        if guidance is None:
            guides = list(self.guidance)
        elif isinstance(guidance, (list, tuple)):
            guides = [_resolve("guidance", g, Guidance) for g in guidance]
        else:
            guides = [_resolve("guidance", guidance, Guidance)]
        if sampler is not None or guidance is not None:
            check_fit(self.fit(resolved, guides))
        return resolved.with_buffers(self.buffers), guides

    def _fitting(self, kind: str) -> list[str]:
        return fitting(kind, self.fit())

    def _default_sampler(self) -> Sampler:
        from .plugins import get_registry

        reg = get_registry()
        probe = Fit(self.process, self.parameterization, None, tuple(self.guidance), self.conditioner)
        for name in self.process.preferred_samplers:
            if ("sampler", name) in reg:
                return create("sampler", name, loc="sampler")
        fits = fitting("sampler", probe)
        if fits:
            return create("sampler", fits[0], loc="sampler")
        raise CompatibilityError(
            f"no registered sampler fits process {type(self.process).__name__} "
            f"(capabilities {capabilities_of(self.process)}); install a plugin that provides one")

    def check_fit(self) -> None:
        """Raise :class:`CompatibilityError` naming what would fit when components clash."""
        check_fit(self.fit())

    # -- modules and devices ------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """The weight-holding parts of :attr:`model` by name (``network``, ``conditioner``, ...)."""
        return self.model.parts()

    def parameters(self):
        return self.model.parameters()

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def to(self, device) -> "Pipeline":
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r} requested but no CUDA GPU is available "
                              "(torch.cuda.is_available() is False); use device='cpu'", loc="device")
        self.model.to(device)
        self.buffers = {k: v.to(device) for k, v in self.buffers.items()}
        return self

    def train(self, mode: bool = True) -> "Pipeline":
        self.model.train(mode)
        return self

    def eval(self) -> "Pipeline":
        return self.train(False)

    def denoiser(self, guided: bool = True, model=None, guidance: list[Guidance] | None = None):
        """The (optionally guided) denoiser; ``model`` overrides :attr:`model` (e.g. a DDP wrapper),
        ``guidance`` the pipeline's guidance (e.g. copies bound to one sampling call)."""
        if model is None:
            # without a conditioner the wrapper module only forwards: call the network itself
            # (one module call less per evaluation; the same parameters and outputs)
            model = self.network if self.conditioner is None and isinstance(self.network, nn.Module) else self.model
        d = Denoiser(model, self.parameterization, self.process, self.conditioner, buffers=self.buffers, encodes=True)
        if guided:
            for g in (self.guidance if guidance is None else guidance):
                d = g.wrap(d, self.conditioner)
        return d

    # -- training ---------------------------------------------------------------------------
    def loss(self, x0: Any, cond: Any = None, generator=None, model=None) -> torch.Tensor:
        """Differentiable scalar loss for a batch of data (conditioner dropout applied).

        ``model`` overrides :attr:`model` (``dk.train`` passes its DDP wrapper)."""
        self.process.check_state(x0, self.sample_shape, loc="x0")
        n = st.batch_size(x0)
        if not n:
            raise ShapeError("x0: expected a non-empty batch (first dimension >= 1)")
        check_cond(cond, n)
        if cond is not None and self.conditioner is not None:
            cond = self.conditioner.drop(cond, generator)
        return self.parameterization.loss(self.denoiser(guided=False, model=model), x0, cond, generator)

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, cond: Any = None, generator=None, *, progress: bool = False,
               callback=None, return_trajectory: bool = False, x_init: Any = None,
               sampler: Any = None, guidance: Any = None, device=None, batch_size: int | None = None):
        """Draw ``n`` samples. ``generator``: one Generator, one per sample, or int seeds.

        ``batch_size`` draws at most that many samples at once (bounded memory). Sample ``i`` then
        uses its own generator (the given per-sample ones, or one seeded from ``generator``), so
        the result does not depend on ``batch_size``: any chunking gives the same samples.

        ``sampler`` / ``guidance`` replace the pipeline's for this call (checked by the same
        fit check as construction). Returns the samples, or a :class:`SamplingResult` with the
        trajectory and NFE when ``return_trajectory``. ``self.last_nfe`` always holds the
        network evaluations used.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer (number of samples), got {n!r}", loc="n")
        check_cond(cond, n)
        if x_init is not None and st.batch_size(x_init) != n:
            raise ShapeError(f"x_init: batch {st.batch_size(x_init)} != n = {n}")
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}", loc="batch_size")
            return self._sample_chunked(n, batch_size, cond, generator, progress=progress, callback=callback,
                                        return_trajectory=return_trajectory, x_init=x_init, sampler=sampler,
                                        guidance=guidance, device=device)
        sampler, guides = self.call_components(sampler, guidance)
        fit = self.fit(sampler, guides)
        try:
            gens = as_generators(generator, n if isinstance(generator, (list, tuple)) else None)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc), loc="generator") from None
        device = torch.device(device) if device is not None else self.device
        if cond is None:  # processes whose states need a condition draw one (GDSS node flags)
            cond = self.process.sample_cond(n, gens, device)
        if x_init is None:
            if self.sample_shape is None:
                raise ConfigError("sample_shape is unknown: pass sample_shape=... to Pipeline or train it first",
                                  loc="sample_shape")
            x_init = self.process.prior(n, self.sample_shape, cond=cond, generator=gens, device=device)
        bound = [g.bind(cond, fit) for g in guides]
        self.last_guidance = bound
        denoiser = self.denoiser(guidance=bound)
        denoiser.reset_nfe()
        trajectory: list = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sampler.steps,  # one update per step callback
                       desc=f"sampling ({type(sampler).__name__})", leave=False, disable=None)
        hooks = [g for g in bound if g.has_step_hook()]
        # Backstop for samplers that do not track non-finite states themselves: the first
        # bad step is recorded on the device and reported once at the end (no per-step sync).
        trackers: list[FiniteTracker] = []

        def _callback(info):
            x = info["x"]
            for g in hooks:
                x = g.on_step(x, info)
            info["x"] = x
            if st.is_state(x):
                if not trackers:
                    trackers.append(FiniteTracker(st.device_of(x)))
                trackers[0].update(x, int(info.get("i", 0)))
            if return_trajectory:
                trajectory.append(st.cpu_copy(x))
            if bar is not None:
                bar.update(1)
            if callback is not None:
                out = callback(info)
                if out is not None:
                    x = out
            return x

        start = time.perf_counter()
        was_training = self.model.training
        self.eval()
        try:
            grad = any(g.needs_grad for g in bound)
            with torch.set_grad_enabled(grad):
                out = sampler.sample(denoiser, self.process, x_init, cond=cond, generator=gens, callback=_callback)
        finally:
            self.train(was_training)
            if bar is not None:
                bar.close()
        self.last_nfe = denoiser.nfe
        if trackers:
            trackers[0].check(f"sampler {type(sampler).__name__}")
        if not st.all_finite(out):
            raise NonFiniteError(f"sampler {type(sampler).__name__}: the final state is NaN/Inf; check the "
                                 "network output and the time grid's end point", step=None)
        if return_trajectory:
            return SamplingResult(out, trajectory, denoiser.nfe, time.perf_counter() - start)
        return out

    def _sample_chunked(self, n, batch_size, cond, generator, **kwargs):
        import warnings

        from .fit import batch_coupling

        if isinstance(generator, (list, tuple)):
            gens = as_generators(generator, n)
        else:
            seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()  # one seed per sample
            gens = [torch.Generator().manual_seed(s) for s in seeds]
        sampler, guides = self.call_components(kwargs.get("sampler"), kwargs.get("guidance"))
        # every chunk uses these objects: a spec is resolved (and its plan built) once, not per chunk
        if kwargs.get("sampler") is not None:
            kwargs["sampler"] = sampler
        if kwargs.get("guidance") is not None:
            kwargs["guidance"] = guides
        coupling = batch_coupling(sampler, guides)
        if coupling and batch_size < n:
            warnings.warn(f"batch_size={batch_size} < n={n}: results depend on the chunking because "
                          + "; ".join(coupling), stacklevel=3)
        x_init = kwargs.pop("x_init")
        outs, trajectories, nfe, seconds = [], [], 0, 0.0
        for a in range(0, n, batch_size):
            b = min(n, a + batch_size)
            part = self.sample(b - a, cond=st.index(cond, slice(a, b)) if st.is_state(cond) else cond,
                               generator=gens[a:b], x_init=None if x_init is None else st.index(x_init, slice(a, b)),
                               **kwargs)
            nfe = max(nfe, self.last_nfe or 0)
            if isinstance(part, SamplingResult):
                trajectories.append(part.trajectory)
                seconds += part.seconds
                part = part.sample
            outs.append(part)
        self.last_nfe = nfe
        out = outs[0] if len(outs) == 1 else st.concat(outs)
        if kwargs.get("return_trajectory"):
            steps = [st.concat(list(xs)) for xs in zip(*trajectories)]
            return SamplingResult(out, steps, nfe, seconds)
        return out

    # -- likelihood -------------------------------------------------------------------------
    def log_likelihood(self, x: Any, cond: Any = None, **kwargs) -> torch.Tensor:
        """Per-sample log-likelihood (nats) where the process supports it."""
        if not isinstance(self.process, Likelihood):
            raise CompatibilityError(
                f"{type(self.process).__name__} provides no log_likelihood; processes with a "
                "probability-flow ODE (vp, subvp, ve) or an ELBO (masked) do")
        self.eval()
        return self.process.log_likelihood(self.denoiser(guided=False), x, cond=cond, **kwargs)

    # -- config and persistence -------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """``{kind: {"name": ..., **params}}`` that rebuilds this pipeline via from_config."""
        cfg: dict[str, Any] = {}
        parts = {"process": self.process, "parameterization": self.parameterization, "network": self.network,
                 "sampler": self.sampler, "conditioner": self.conditioner}
        for kind, obj in parts.items():
            cfg[kind] = None if obj is None else spec_of(obj, kind)
        cfg["guidance"] = [spec_of(g, "guidance") for g in self.guidance] or None
        cfg["sample_shape"] = st.shape_to_json(self.sample_shape)
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
        return (f"Pipeline(process={self.process!r}, parameterization={self.parameterization!r}, "
                f"sampler={self.sampler!r}, network={type(self.network).__name__})")
