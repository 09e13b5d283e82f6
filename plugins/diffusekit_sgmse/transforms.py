"""Spectral front end of SGMSE+ (Richter et al. 2023, section IV-A; Welker et al. 2022).

* STFT: n_fft 510 (256 bins), hop 128, periodic Hann window, ``center=True`` (torch.stft).
* Amplitude compression c = beta |X|^alpha e^{i angle X} (alpha 0.5, beta 0.15) and its exact
  inverse X = |c / beta|^{1/alpha} e^{i angle c}.
* Normalisation: both waveforms are divided by max|y| of the noisy waveform; the enhanced
  waveform is multiplied back.
* Frames are padded (reflect) to a multiple of 64 so that the U-Net's down-sampling divides.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SpecTransform:
    """Waveform <-> compressed complex spectrogram, shape (B, n_fft // 2 + 1, frames)."""

    n_fft: int = 510
    hop_length: int = 128
    alpha: float = 0.5
    beta: float = 0.15
    frame_multiple: int = 64

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def window(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.hann_window(self.n_fft, periodic=True, device=device, dtype=dtype)

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, L) or (L,) real -> complex (B, F, frames)."""
        return torch.stft(wav, self.n_fft, self.hop_length, window=self.window(wav.device, wav.dtype),
                          center=True, return_complex=True)

    def istft(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop_length, window=self.window(spec.device, spec.real.dtype),
                           center=True, length=length)

    def compress(self, spec: torch.Tensor) -> torch.Tensor:
        """beta |X|^alpha e^{i angle X}."""
        return self.beta * spec.abs() ** self.alpha * torch.exp(1j * spec.angle())

    def decompress(self, spec: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`compress`: |c / beta|^{1/alpha} e^{i angle c}."""
        return (spec.abs() / self.beta) ** (1 / self.alpha) * torch.exp(1j * spec.angle())

    def frames_for(self, length: int) -> int:
        return length // self.hop_length + 1

    def padded_length(self, length: int) -> int:
        """Smallest length >= ``length`` whose STFT has a multiple of ``frame_multiple`` frames and
        whose last frame centre lies at or beyond the signal end (so the iSTFT is exact)."""
        frames = -(-length // self.hop_length) + 1
        target = -(-frames // self.frame_multiple) * self.frame_multiple
        return (target - 1) * self.hop_length

    def pad(self, wav: torch.Tensor) -> torch.Tensor:
        """Zero-pad the waveform (last axis) so that the spectrogram has a multiple of 64 frames."""
        extra = self.padded_length(wav.shape[-1]) - wav.shape[-1]
        return F.pad(wav, (0, extra)) if extra > 0 else wav

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveform -> compressed spectrogram (no normalisation, no padding)."""
        return self.compress(self.stft(wav))

    def inverse(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        return self.istft(self.decompress(spec), length)

    def analyse(self, noisy: torch.Tensor, clean: torch.Tensor | None = None):
        """Normalise by the noisy peak, pad, transform. Returns (Y, X or None, norm, length).

        ``noisy`` / ``clean``: (B, L) or (L,). ``norm`` has shape (B,) (or ()) so that
        ``synthesise(X, norm, length)`` restores the original scale and length.
        """
        length = noisy.shape[-1]
        norm = noisy.abs().amax(-1).clamp_min(1e-8)
        y = self.forward(self.pad(noisy / norm.unsqueeze(-1)))
        x = None if clean is None else self.forward(self.pad(clean / norm.unsqueeze(-1)))
        return y, x, norm, length

    def synthesise(self, spec: torch.Tensor, norm: torch.Tensor, length: int) -> torch.Tensor:
        return self.inverse(spec, self.padded_length(length))[..., :length] * norm.unsqueeze(-1)
