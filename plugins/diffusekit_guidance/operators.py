"""Linear forward operators A for inverse problems (DPS, replacement inpainting, exact posteriors).

Every operator is an ``nn.Module`` with ``forward(x) = A x`` on a batch and (where it is a
projection) ``mask`` for replacement methods. All are linear, so ``A`` is differentiable and
the Gaussian likelihood p(y | x0) = N(y; A x0, sigma_y^2 I) is exact for the matrix view.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffusekit.errors import ShapeError


class LinearOperator(nn.Module):
    """Base class: ``forward(x) -> A x`` for x of shape (B, ...)."""

    def matrix(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The dense matrix of A for per-sample input ``shape`` (small problems and tests)."""
        d = math.prod(shape)
        eye = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
        with torch.no_grad():
            return self.to(torch.float64)(eye).reshape(d, -1).T.contiguous()


class MatrixOperator(LinearOperator):
    """y = A x.flatten(1) for a dense matrix A of shape (m, d)."""

    def __init__(self, A: torch.Tensor):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.A.to(x.dtype).T


class Inpainting(LinearOperator):
    """y = m * x with a binary mask m of the per-sample shape (1 = observed)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.mask.shape):
            raise ShapeError(f"inpainting mask has shape {tuple(self.mask.shape)}, state has per-sample shape "
                             f"{tuple(x.shape[1:])}")
        return x * self.mask.to(x.dtype)


class SuperResolution(LinearOperator):
    """y = average pooling by ``factor`` over the last two dimensions (B, C, H, W)."""

    def __init__(self, factor: int):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor)


class GaussianBlur(LinearOperator):
    """y = x convolved per channel with a normalised Gaussian kernel (zero padding, same size)."""

    def __init__(self, kernel_size: int = 3, sigma: float = 1.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        r = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
        k1 = torch.exp(-r ** 2 / (2 * sigma ** 2))
        k = torch.outer(k1, k1)
        self.register_buffer("kernel", (k / k.sum()).float()[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch = x.shape[1]
        w = self.kernel.to(x.dtype).expand(ch, 1, -1, -1)
        return F.conv2d(x, w, padding=self.kernel.shape[-1] // 2, groups=ch)
