"""Run the torch dynamo ONNX exporter with dynamic shapes and turn its failures into
:class:`~diffusekit.errors.ExportError`-style messages naming the operator and module."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from diffusekit import state as st
from diffusekit.errors import DiffusekitError


class OnnxExportError(DiffusekitError, RuntimeError):
    """A module could not be exported to ONNX.

    ``operator`` is the offending operator (e.g. ``aten.item`` / a data-dependent branch),
    ``module`` the dotted name of the submodule whose ``forward`` raised it, ``location``
    ``file:line`` and ``code`` the source line, when they could be found.
    """

    def __init__(self, message: str, operator: str | None = None, module: str | None = None,
                 location: str | None = None, code: str | None = None):
        self.operator, self.module, self.location, self.code = operator, module, location, code
        super().__init__(message)


class OnnxVerificationError(DiffusekitError, AssertionError):
    """An exported graph failed a check (checker, shape inference, parity, symbolic dims)."""


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\w+)\n\s+(.+)')
_OP = re.compile(r"(?:torch\.ops\.)?(aten|prims|higher_order)[.:]+(\w+)(?:\.(\w+))?")


def _user_frames(text: str) -> list[tuple[str, int, str, str]]:
    frames = []
    for file, line, func, code in _FRAME.findall(text):
        if "/torch/" in file or "/onnxscript/" in file or "<eval_with_key>" in file:
            continue
        frames.append((file, int(line), func, code.strip()))
    return frames


def _module_at(root: nn.Module, file: str, line: int) -> str | None:
    """Dotted name of the submodule whose class defines the source line ``file:line``."""
    best = None
    for name, mod in root.named_modules():
        try:
            src = inspect.getsourcefile(type(mod))
            lines, start = inspect.getsourcelines(type(mod))
        except (OSError, TypeError):
            continue
        if src and Path(src).resolve() == Path(file).resolve() and start <= line < start + len(lines):
            if best is None or len(name) > len(best[0]):  # deepest match
                best = (name or "<root>", type(mod).__name__)
    return f"{best[0]} ({best[1]})" if best else None


def explain_failure(exc: BaseException, root: nn.Module, what: str) -> OnnxExportError:
    """Condense an exporter exception chain into one actionable error."""
    chain = _chain(exc)
    text = "\n".join(str(e) for e in chain)
    root_exc = chain[-1]
    kinds = {type(e).__name__ for e in chain}
    frames = _user_frames(text)
    file, line, func, code = frames[-1] if frames else (None, None, None, None)
    module = _module_at(root, file, line) if file else None
    op = None
    if "GuardOnDataDependentSymNode" in kinds or "data-dependent" in text:
        m = re.search(r"torch\.ops\.aten\.(item|_local_scalar_dense|nonzero)", text)
        op = f"aten.{m.group(1)}" if m else "a data-dependent branch (Tensor.__bool__ / .item())"
        reason = ("it has data-dependent control flow: Python branches on tensor values cannot be "
                  "captured in a static graph; replace `if tensor:` by torch.where / torch.cond")
    else:
        m = (re.search(r"(?:No decomposition|not supported|Unsupported|unsupported)[^\n]*?(aten[.:]+\w+(?:\.\w+)?)", text)
             or _OP.search(str(root_exc)))
        if m is not None:
            op = m.group(1) if m.lastindex == 1 else ".".join(p for p in m.groups() if p)
        reason = f"{type(root_exc).__name__}: {str(root_exc).strip().splitlines()[0][:300]}"
    where = ""
    if file:
        where = f" in module {module or '?'} at {file}:{line} ({func}): `{code}`"
    msg = f"cannot export {what} to ONNX{where}; operator {op or 'unknown'}: {reason}"
    return OnnxExportError(msg, operator=op, module=module, location=f"{file}:{line}" if file else None,
                           code=code)


@contextlib.contextmanager
def quiet():
    """Silence the exporter's progress prints and the torchvision registration warnings."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                               "torch.fx.experimental.symbolic_shapes", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _resize(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``t`` with dimension ``dim`` resized to ``size`` (tiled / truncated, keeps dtype and range)."""
    reps = -(-size // t.shape[dim])
    return torch.cat([t] * reps, dim=dim).narrow(dim, 0, size)


#: dynamic non-batch axes: ``[(axis, [flat input indices resized together]), ...]``
Axes = list[tuple[int, list[int]]]


class Signature:
    """The flat graph inputs of structured arguments: one ONNX input per state leaf.

    ``prefixes`` name the arguments (``x_t``, ``t``, ``cond``); a Tensor argument is one input
    named by its prefix, a dict state one input per leaf under its dotted name from
    :func:`diffusekit.state.flatten` (``x_t.a``, ``x_t.b``). ``like`` holds each argument's
    nesting (for :meth:`unflatten`); dicts are rebuilt with sorted keys, the order in which
    both the exporter and :func:`diffusekit.state.leaves` walk them.
    """

    def __init__(self, inputs: Sequence[Any], prefixes: Sequence[str]):
        if len(inputs) > len(prefixes):
            raise ValueError(f"{len(inputs)} inputs but only names {list(prefixes)}")
        self.prefixes = list(prefixes[:len(inputs)])
        self.like = list(inputs)
        self.names: list[str] = []
        self.counts: list[int] = []
        for v, p in zip(inputs, self.prefixes):
            names = list(st.flatten(v, p)) if st.is_state(v) else [p]
            self.names.extend(names)
            self.counts.append(len(names))

    @staticmethod
    def canonical(v: Any) -> Any:
        """``v`` with every dict rebuilt in sorted key order (Tensors and other values unchanged)."""
        return st.unflatten(st.flatten(v), v) if isinstance(v, Mapping) and st.is_state(v) else v

    def flatten(self, inputs: Sequence[Any]) -> list[Any]:
        """The leaves of ``inputs`` in graph-input order."""
        out: list[Any] = []
        for v in inputs:
            out.extend(st.leaf_list(v) if st.is_state(v) else [v])
        if len(out) != len(self.names):
            raise ValueError(f"inputs give {len(out)} leaves, the graph takes {self.names}")
        return out

    def unflatten(self, flat: Sequence[Any]) -> tuple[Any, ...]:
        """Structured arguments from leaves in graph-input order (the nesting of ``like``)."""
        out, pos = [], 0
        for like, n in zip(self.like, self.counts):
            part = list(flat[pos:pos + n])
            pos += n
            out.append(st.unflatten(part, like) if st.is_state(like) else part[0])
        return tuple(out)

    def state_indices(self, arg: int = 0) -> list[int]:
        """Flat indices of the leaves of argument ``arg`` (the state)."""
        start = sum(self.counts[:arg])
        return list(range(start, start + self.counts[arg]))


def probe_dynamic_axes(module: nn.Module, inputs: Sequence[Any], sig: Signature | None = None) -> Axes:
    """Non-batch axes of the state's leaves that the module accepts at twice their size.

    Axis k of a state leaf is dynamic if the module runs with it doubled (and the same axis of
    every other input that has the same size there, e.g. a spectrogram condition, doubled
    too). Returns ``[(axis, [flat input indices resized together]), ...]``; the indices are
    positions in ``sig.names`` (for a Tensor state: 0 = x_t, 1 = t, 2 = cond).
    """
    sig = sig or Signature(inputs, [f"in{i}" for i in range(len(inputs))])
    flat = sig.flatten(inputs)
    states = sig.state_indices(0)
    out: Axes = []
    for j in states:
        x = flat[j]
        for k in range(1, x.ndim):
            group = [i for i, v in enumerate(flat) if (i == j or i not in states)
                     and torch.is_tensor(v) and v.ndim > k and v.shape[k] == x.shape[k] and v.is_floating_point()]
            trial = [(_resize(v, k, 2 * v.shape[k]) if i in group else v) for i, v in enumerate(flat)]
            try:
                with torch.no_grad():
                    module(*sig.unflatten(trial))
            except Exception:  # noqa: BLE001 - the network refuses this size: axis is static
                continue
            out.append((k, group))
    return out


def resize_axes(flat: Sequence[Any], axes: Axes) -> list[Any]:
    """``flat`` with every dynamic group's axis doubled (a second verification shape)."""
    out = list(flat)
    for k, group in axes:
        for i in group:
            out[i] = _resize(out[i], k, 2 * out[i].shape[k])
    return out


def dynamic_shapes_for(inputs: Sequence[Any], axes: Axes | None = None):
    """``dynamic_shapes`` for torch.export: a shared ``batch`` Dim on every tensor leaf (with
    the nesting of ``inputs``) plus AUTO for the probed axes."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1 << 20)
    shapes = []
    pos = 0
    for v in inputs:
        if not st.is_state(v):
            shapes.append(None)
            pos += 1
            continue
        specs = []
        for _ in st.leaves(v):
            spec = {0: batch}
            for k, group in axes or ():
                if pos in group:
                    spec[k] = Dim.AUTO
            specs.append(spec)
            pos += 1
        shapes.append(st.unflatten(specs, v))
    return tuple(shapes)


def export_module(module: nn.Module, inputs: Sequence[Any], names: Sequence[str], output_names: Sequence[str],
                  path: Path, opset: int = 20, dynamic_axes: Axes | None = None, what: str = "module"):
    """``torch.onnx.export(dynamo=True)`` with a dynamic batch; raises :class:`OnnxExportError`.

    ``inputs`` are the module's (structured) arguments; ``names`` the flat input names, one per
    tensor leaf in the order the exporter flattens them (see :class:`Signature`)."""
    module = module.eval()
    axes = list(dynamic_axes or [])
    grads = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in grads:  # an inference graph: no autograd bookkeeping (scan would trace a joint graph)
        p.requires_grad_(False)
    try:
        return _export(module, inputs, names, output_names, path, opset, axes, what)
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)


def _export(module, inputs, names, output_names, path, opset, axes, what):
    import inspect

    args = tuple(inputs)
    kwargs: dict[str, Any] = {}
    shapes: Any = dynamic_shapes_for(args, axes)
    if args and isinstance(args[-1], Mapping):
        # torch.onnx.export reads a trailing dict argument (a dict condition) as keyword
        # arguments: pass it by its parameter name, with the dynamic shapes keyed by name
        params = list(inspect.signature(module.forward).parameters)
        kwargs = {params[len(args) - 1]: args[-1]}
        shapes = {params[i]: shapes[i] for i in range(len(args))}
        args = args[:-1]
    try:
        with quiet():
            prog = torch.onnx.export(module, args, kwargs=kwargs, dynamo=True, opset_version=opset,
                                     dynamic_shapes=shapes,
                                     input_names=list(names), output_names=list(output_names),
                                     verbose=False, report=False, external_data=False)
    except Exception as exc:  # noqa: BLE001 - re-raised as one readable error
        raise explain_failure(exc, module, what) from exc
    if prog is None:  # pragma: no cover - defensive: dynamo=True always returns a program
        raise OnnxExportError(f"torch.onnx.export returned no program for {what}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        prog.save(str(path))
    return prog
