"""Speech-enhancement metrics: SI-SDR (own implementation), wide-band PESQ (``pesq``) and
ESTOI (``pystoi``, extended=True), all at 16 kHz.

SI-SDR (Le Roux et al. 2019): s_target = (<xhat, s> / |s|^2) s, e = xhat - s_target,
SI-SDR = 10 log10(|s_target|^2 / |e|^2). Both signals are made zero-mean first.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import SAMPLE_RATE


def _np(x) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def si_sdr(estimate, reference) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (1-D signals)."""
    est, ref = _np(estimate), _np(reference)
    if est.shape != ref.shape:
        raise ValueError(f"si_sdr: estimate {est.shape} and reference {ref.shape} differ in shape")
    est = est - est.mean()
    ref = ref - ref.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(noise, noise) + 1e-12)))


def pesq_wb(estimate, reference, sr: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2) via the ``pesq`` package."""
    from pesq import pesq

    return float(pesq(sr, _np(reference), _np(estimate), "wb"))


def estoi(estimate, reference, sr: int = SAMPLE_RATE) -> float:
    """Extended STOI via ``pystoi``."""
    from pystoi import stoi

    return float(stoi(_np(reference), _np(estimate), sr, extended=True))


def all_metrics(estimate, reference, sr: int = SAMPLE_RATE) -> dict[str, float]:
    return {"pesq": pesq_wb(estimate, reference, sr), "estoi": estoi(estimate, reference, sr),
            "si_sdr": si_sdr(estimate, reference)}
