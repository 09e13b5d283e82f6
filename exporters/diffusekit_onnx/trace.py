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
from typing import Any, Sequence

import torch
from torch import nn

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


def probe_dynamic_axes(module: nn.Module, inputs: Sequence[Any]) -> dict[int, list[int]]:
    """Non-batch axes of the first input the module accepts at twice their size.

    Axis k of input 0 is dynamic if the module runs with it doubled (and the same axis of
    every other input that has the same size there, e.g. a spectrogram condition, doubled
    too). Returns ``{axis: [input indices resized together]}``.
    """
    x = inputs[0]
    out: dict[int, list[int]] = {}
    for k in range(1, x.ndim):
        group = [i for i, v in enumerate(inputs)
                 if torch.is_tensor(v) and v.ndim > k and v.shape[k] == x.shape[k] and v.is_floating_point()]
        trial = [(_resize(v, k, 2 * v.shape[k]) if i in group else v) for i, v in enumerate(inputs)]
        try:
            with torch.no_grad():
                module(*trial)
        except Exception:  # noqa: BLE001 - the network refuses this size: axis is static
            continue
        out[k] = group
    return out


def dynamic_shapes_for(inputs: Sequence[Any], axes: dict[int, list[int]]):
    """``dynamic_shapes`` for torch.export: a shared ``batch`` Dim plus AUTO for probed axes."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1 << 20)
    shapes = []
    for i, v in enumerate(inputs):
        if not torch.is_tensor(v):
            shapes.append(None)
            continue
        spec = {0: batch}
        for k, group in axes.items():
            if i in group:
                spec[k] = Dim.AUTO
        shapes.append(spec)
    return tuple(shapes)


def export_module(module: nn.Module, inputs: Sequence[Any], names: Sequence[str], output_names: Sequence[str],
                  path: Path, opset: int = 20, dynamic_axes: dict[int, list[int]] | None = None, what: str = "module"):
    """``torch.onnx.export(dynamo=True)`` with a dynamic batch; raises :class:`OnnxExportError`."""
    module = module.eval()
    axes = dynamic_axes or {}
    grads = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in grads:  # an inference graph: no autograd bookkeeping (scan would trace a joint graph)
        p.requires_grad_(False)
    try:
        return _export(module, inputs, names, output_names, path, opset, axes, what)
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)


def _export(module, inputs, names, output_names, path, opset, axes, what):
    kept = [(n, v) for n, v in zip(names, inputs)]
    args = tuple(v for _, v in kept)
    try:
        with quiet():
            prog = torch.onnx.export(module, args, dynamo=True, opset_version=opset,
                                     dynamic_shapes=dynamic_shapes_for(args, axes),
                                     input_names=[n for n, _ in kept], output_names=list(output_names),
                                     verbose=False, report=False, external_data=False)
    except Exception as exc:  # noqa: BLE001 - re-raised as one readable error
        raise explain_failure(exc, module, what) from exc
    if prog is None:  # pragma: no cover - defensive: dynamo=True always returns a program
        raise OnnxExportError(f"torch.onnx.export returned no program for {what}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        prog.save(str(path))
    return prog
