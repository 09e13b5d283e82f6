"""Optimisation profiles (min / opt / max input shapes) derived from an exported ONNX graph.

The batch dimension (``dim_param == "batch"``) takes the (min, opt, max) batch of the options;
every other symbolic dimension takes ``dims[dim_param]`` or, by default, the size it had in the
export example (stored by the onnx exporter as ``diffusekit.example_shapes``), so the engine
accepts exactly what was verified. Static dimensions stay fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusekit.errors import ConfigError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """``{input name: (min, opt, max)}`` shapes of one TensorRT optimisation profile."""

    shapes: dict[str, tuple[Shape, Shape, Shape]]

    def as_dict(self) -> dict[str, Any]:
        return {k: {"min": list(v[0]), "opt": list(v[1]), "max": list(v[2])} for k, v in self.shapes.items()}

    def flags(self, which: int) -> list[str]:
        """``["x_t:[1,1,8,8]", "t:[1]"]``: polygraphy's per-input shape arguments (0 min, 1 opt, 2 max)."""
        return [f"{k}:[{','.join(str(d) for d in v[which])}]" for k, v in self.shapes.items()]

    def flag(self, which: int) -> str:
        """``x_t:[1,1,8,8],t:[1]`` (one string)."""
        return ",".join(self.flags(which))

    def trtexec(self, which: int) -> str:
        """``x_t:1x1x8x8,t:1`` (trtexec's ``--minShapes`` syntax)."""
        return ",".join(f"{k}:{'x'.join(str(d) for d in v[which])}" for k, v in self.shapes.items())


def derive_profile(model, min_batch: int, opt_batch: int, max_batch: int,
                   dims: dict[str, tuple[int, int, int]] | None = None,
                   example_shapes: dict[str, list[int]] | None = None) -> Profile:
    """The profile of every graph input of ``model`` (an ``onnx.ModelProto``)."""
    dims = dict(dims or {})
    example_shapes = example_shapes or {}
    out = {}
    init_names = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        lo, opt, hi = [], [], []
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.dim_param == "batch" or (axis == 0 and d.dim_param and d.dim_param not in dims):
                rng = (min_batch, opt_batch, max_batch)
            elif d.dim_param:
                if d.dim_param in dims:
                    rng = tuple(dims[d.dim_param])
                else:
                    ex = example_shapes.get(inp.name)
                    if ex is None or axis >= len(ex):
                        raise ConfigError(
                            f"input {inp.name!r} axis {axis} is symbolic ({d.dim_param!r}) and no size is known; "
                            f"pass dims={{'{d.dim_param}': (min, opt, max)}}", loc="dims")
                    rng = (ex[axis],) * 3
            else:
                rng = (d.dim_value,) * 3
            lo.append(rng[0])
            opt.append(rng[1])
            hi.append(rng[2])
        out[inp.name] = (tuple(lo), tuple(opt), tuple(hi))
    unused = set(dims) - {d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim}
    if unused:
        raise ConfigError(f"dims names {sorted(unused)} are not symbolic dims of the graph inputs", loc="dims")
    return Profile(out)
