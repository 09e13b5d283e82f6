"""Structured states: a state is a Tensor or a (nested) dict of Tensors.

Every place the core touches a state (pipeline, training, save / load, trajectories, finite
tracking, the conformance kit, ONNX export) goes through the helpers here, so a graph state
``{"x": X, "adj": A}`` is handled exactly like a plain tensor. The first dimension of every
leaf is the batch.

* :func:`leaves` / :func:`flatten` / :func:`unflatten`: leaves in a fixed order (sorted keys,
  depth first) under dotted names (``"x"``, ``"adj"``, ``"pose.rot"``);
* :func:`map_state` / :func:`zip_map`: apply a function leaf-wise to one or several states of
  the same structure;
* :func:`batch_size`, :func:`index`, :func:`concat`, :func:`to`, :func:`detach`, :func:`clone`;
* :func:`shape_of`: the per-sample shape with the state's nesting (a tuple, or a dict of
  tuples), the form of ``Pipeline.sample_shape``;
* :func:`all_finite`: one host sync for the whole state.

Training data are explicit :class:`Example` objects (``x`` a state, ``cond`` a condition or
None); nothing is inferred from dict keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import torch

State = Union[torch.Tensor, Mapping[str, "State"]]
#: per-sample shape of a state: a tuple for a Tensor state, a dict of those for a dict state
Shape = Union[tuple, Mapping[str, "Shape"]]


@dataclass
class Example:
    """A batch of training data: ``x`` (a state, first dimension = batch) and its condition.

    ``cond`` is None, a Tensor or a dict of Tensors with the same batch size. Datasets return
    an ``Example``; ``dk.train`` also accepts a bare state (no condition) or ``(x, cond)``.
    """

    x: Any
    cond: Any = None
    #: None, or a (batch,) integer tensor: ``dk.train`` then draws every batch from one group
    #: (the group of a uniformly drawn example, so each example keeps its share of the steps),
    #: e.g. graphs of similar size, and trims its padding with ``ForwardProcess.compact``
    groups: Any = None

    def __len__(self) -> int:
        return batch_size(self.x)

    def index(self, idx) -> "Example":
        return Example(index(self.x, idx), None if self.cond is None else index(self.cond, idx),
                       None if self.groups is None else self.groups[idx])


def is_state(x: Any) -> bool:
    """True for a Tensor or a non-empty (nested) dict whose leaves are all Tensors."""
    if torch.is_tensor(x):
        return True
    if isinstance(x, Mapping) and x:
        return all(isinstance(k, str) and is_state(v) for k, v in x.items())
    return False


def _items(x: Mapping) -> list:
    return sorted(x.items(), key=lambda kv: kv[0])


def leaves(x: State, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) for every leaf, sorted by key; a Tensor state is one leaf ``prefix``."""
    if torch.is_tensor(x):
        yield prefix, x
        return
    if not isinstance(x, Mapping):
        raise TypeError(f"a state is a Tensor or a dict of Tensors, got {type(x).__name__}")
    for k, v in _items(x):
        yield from leaves(v, f"{prefix}.{k}" if prefix else k)


def leaf_list(x: State) -> list[torch.Tensor]:
    return [v for _, v in leaves(x)]


def first_leaf(x: State) -> torch.Tensor:
    for _, v in leaves(x):
        return v
    raise TypeError("empty state")


def flatten(x: State, prefix: str = "") -> dict[str, torch.Tensor]:
    """``{dotted name: leaf}`` (a Tensor state gives ``{prefix: x}``)."""
    return dict(leaves(x, prefix))


def unflatten(flat: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], like: Any, prefix: str = "") -> State:
    """Inverse of :func:`flatten` with the nesting of ``like`` (a state or a :data:`Shape`).

    ``flat`` is a mapping of dotted names or a sequence of leaves in :func:`leaves` order.
    """
    seq = list(flat) if not isinstance(flat, Mapping) else None
    pos = [0]

    def build(node, name):
        if not isinstance(node, Mapping):
            if seq is not None:
                v = seq[pos[0]]
                pos[0] += 1
                return v
            return flat[name]
        return {k: build(v, f"{name}.{k}" if name else k) for k, v in _items(node)}

    return build(like, prefix)


def map_state(fn: Callable[[torch.Tensor], Any], x: State) -> State:
    """Apply ``fn`` to every leaf, keeping the nesting."""
    if torch.is_tensor(x):
        return fn(x)
    return {k: map_state(fn, v) for k, v in x.items()}


def zip_map(fn: Callable[..., Any], *states: Any) -> Any:
    """``fn(leaf_1, leaf_2, ...)`` over states with the nesting of the first one.

    The other arguments may be states of the same nesting or plain values / tensors that are
    broadcast to every leaf (a scalar coefficient, a shared time)."""
    head = states[0]
    if torch.is_tensor(head):
        return fn(*states)
    if not isinstance(head, Mapping):
        raise TypeError(f"a state is a Tensor or a dict of Tensors, got {type(head).__name__}")
    out = {}
    for k in head:
        parts = []
        for s in states:
            if isinstance(s, Mapping):
                if k not in s:
                    raise KeyError(f"state key {k!r} missing in one of the states (keys {sorted(s)})")
                parts.append(s[k])
            else:
                parts.append(s)
        out[k] = zip_map(fn, *parts)
    return out


def batch_size(x: Any) -> int | None:
    """Size of the first dimension (None for a 0-d tensor or something that is not a state)."""
    if torch.is_tensor(x):
        return x.shape[0] if x.ndim else None
    if isinstance(x, Mapping):
        for _, v in leaves(x):
            return v.shape[0] if v.ndim else None
    return None


def check_batch(x: State, loc: str = "x") -> int:
    """The common batch size of every leaf; raises ShapeError naming the leaf that differs."""
    from .errors import ShapeError

    n = None
    for name, v in leaves(x, loc):
        if v.ndim == 0:
            raise ShapeError(f"{name}: a state leaf needs a batch dimension, got a 0-d tensor")
        if n is None:
            n = v.shape[0]
        elif v.shape[0] != n:
            raise ShapeError(f"{name}: batch {v.shape[0]} differs from the other leaves' batch {n}; "
                             "every leaf of a state has the batch as its first dimension")
    if n is None:
        raise ShapeError(f"{loc}: empty state")
    return n


def index(x: Any, idx) -> Any:
    """Select along the batch dimension of every leaf (a Tensor, a dict state or a condition)."""
    if torch.is_tensor(x):
        return x[idx]
    if isinstance(x, Mapping):
        return {k: index(v, idx) for k, v in x.items()}
    return x


def concat(xs: Sequence[State]) -> State:
    """Concatenate states of the same nesting along the batch."""
    head = xs[0]
    if torch.is_tensor(head):
        return torch.cat(list(xs), 0)
    return {k: concat([x[k] for x in xs]) for k in head}


def to(x: Any, device=None, dtype=None) -> Any:
    """Move every tensor leaf (floating / complex leaves only change dtype)."""
    def move(v: torch.Tensor) -> torch.Tensor:
        if dtype is not None and (v.is_floating_point() or v.is_complex()):
            return v.to(device=device, dtype=dtype)
        return v.to(device=device) if device is not None else v

    if torch.is_tensor(x):
        return move(x)
    if isinstance(x, Mapping):
        return {k: to(v, device, dtype) for k, v in x.items()}
    return x


def detach(x: State) -> State:
    return map_state(lambda v: v.detach(), x)


def clone(x: State) -> State:
    return map_state(lambda v: v.clone(), x)


def cpu_copy(x: State) -> State:
    """A detached CPU copy (trajectories)."""
    return map_state(lambda v: v.detach().cpu().clone(), x)


def shape_of(x: State) -> Shape:
    """Per-sample shape with the state's nesting: ``(3,)`` or ``{"a": (3,), "b": (2, 2)}``."""
    if torch.is_tensor(x):
        return tuple(x.shape[1:])
    return {k: shape_of(v) for k, v in x.items()}


def normalize_shape(shape: Any, loc: str = "sample_shape") -> Shape | None:
    """A per-sample shape from user input (list / tuple of ints or a dict of those)."""
    from .errors import ConfigError

    if shape is None:
        return None
    if isinstance(shape, Mapping):
        if not shape:
            raise ConfigError("an empty dict is not a shape; give {key: [dims]} per state leaf", loc=loc)
        return {str(k): normalize_shape(v, f"{loc}.{k}") for k, v in shape.items()}
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise ConfigError(f"expected a list of ints (or a dict of those for dict states), got {shape!r}", loc=loc)
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ConfigError(f"dimensions must be positive integers, got {list(shape)!r}", loc=loc)
        dims.append(int(d))
    return tuple(dims)


def shape_to_json(shape: Shape | None) -> Any:
    if shape is None:
        return None
    if isinstance(shape, Mapping):
        return {k: shape_to_json(v) for k, v in shape.items()}
    return list(shape)


def same_shape(a: Shape, b: Shape) -> bool:
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return isinstance(a, Mapping) and isinstance(b, Mapping) and set(a) == set(b) and all(
            same_shape(a[k], b[k]) for k in a)
    return tuple(a) == tuple(b)


def check_like(out: Any, ref: State, loc: str = "output") -> None:
    """Raise ShapeError unless ``out`` has ``ref``'s structure (same dict keys), and every leaf
    the same shape and dtype: no silent broadcasting of (B, 1), (1, D) or scalar outputs, no
    silent float64. Reads only metadata (no device sync)."""
    from .errors import ShapeError

    if torch.is_tensor(ref):
        if not torch.is_tensor(out):
            raise ShapeError(f"{loc}: expected a Tensor of shape {tuple(ref.shape)}, got {type(out).__name__}")
        if out.shape != ref.shape:
            raise ShapeError(f"{loc}: shape {tuple(out.shape)} does not match the state's {tuple(ref.shape)}; the "
                             "network must return one value per state entry (broadcasting is not accepted)")
        if out.dtype != ref.dtype:
            raise ShapeError(f"{loc}: dtype {out.dtype} does not match the state's {ref.dtype}; cast inside the "
                             "network (or train in that dtype)")
        return
    if not isinstance(out, Mapping) or set(out) != set(ref):
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ShapeError(f"{loc}: expected a dict with keys {sorted(ref)} (one entry per state leaf), got {got}")
    for k, v in ref.items():
        check_like(out[k], v, f"{loc}.{k}")


def all_finite(x: Any) -> bool:
    """True unless a floating / complex leaf holds NaN or Inf (one host sync for the state)."""
    if not is_state(x):
        return True
    flags = [torch.isfinite(v).all() for v in leaf_list(x) if v.is_floating_point() or v.is_complex()]
    if not flags:
        return True
    return bool(torch.stack(flags).all())


def finite_probe(x: State) -> torch.Tensor:
    """A device scalar that is finite iff every leaf is (NaN / Inf propagate through sums)."""
    probe = None
    for v in leaf_list(x):
        wide = v.is_complex() or v.dtype in (torch.float32, torch.float64)
        s = v.sum() if wide else v.sum(dtype=torch.float32)
        if s.is_complex():
            s = s.real + s.imag
        probe = s if probe is None else probe + s.to(probe.dtype)
    return probe


def real_dtype(x: State) -> torch.dtype:
    """The real floating dtype of the state's first floating leaf (float32 for integer states)."""
    for v in leaf_list(x):
        if v.is_floating_point() or v.is_complex():
            return v.real.dtype
    return torch.float32


def device_of(x: State) -> torch.device:
    return first_leaf(x).device


__all__ = ["State", "Shape", "Example", "is_state", "leaves", "leaf_list", "first_leaf", "flatten",
           "unflatten", "map_state", "zip_map", "batch_size", "check_batch", "index", "concat", "to",
           "detach", "clone", "cpu_copy", "shape_of", "normalize_shape", "shape_to_json", "same_shape",
           "all_finite", "finite_probe", "real_dtype", "device_of"]
