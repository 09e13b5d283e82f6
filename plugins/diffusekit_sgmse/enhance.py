"""Enhancement of waveforms with a trained run: normalise, STFT, sample, iSTFT, and stream long
signals in overlapping chunks (linear cross-fade over the overlap).

A run directory is a saved pipeline (``Pipeline.save``). A StoRM run additionally holds its
predictive stage in ``RUN/predictive``; :func:`storm_condition` stacks [y, y_hat].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .transforms import SpecTransform


def load_run(run_dir) -> tuple[Any, Any | None]:
    """(pipeline, predictive pipeline or None) from a run directory."""
    from diffusekit.pipeline import Pipeline

    run = Path(run_dir)
    pipe = Pipeline.load(run)
    pred = Pipeline.load(run / "predictive") if (run / "predictive" / "config.json").exists() else None
    return pipe, pred


@torch.no_grad()
def storm_condition(predictive, Y: torch.Tensor) -> torch.Tensor:
    """StoRM condition stack (B, 2, F, T) = [y, y_hat] with y_hat from the predictive pipeline."""
    yhat = predictive.sample(Y.shape[0], cond=Y, x_init=Y, sampler={"name": "one-step"})
    return torch.stack([Y, yhat], dim=1)


@torch.no_grad()
def enhance_spec(pipe, Y: torch.Tensor, generator=None, predictive=None, sampler=None) -> torch.Tensor:
    """Enhance compressed spectrograms Y (B, F, T); returns X_hat of the same shape."""
    cond = storm_condition(predictive, Y) if predictive is not None else Y
    x_init = pipe.process.prior(Y.shape[0], tuple(Y.shape[1:]), cond=cond, generator=generator, device=Y.device)
    return pipe.sample(Y.shape[0], cond=cond, generator=generator, x_init=x_init, sampler=sampler)


#: shorter chunks are refused: each chunk is one batch entry of a full reverse process
MIN_CHUNK_SECONDS = 0.25


def check_chunking(chunk_seconds: float, overlap_seconds: float, chunk_loc: str = "chunk_seconds",
                   overlap_loc: str = "overlap_seconds") -> None:
    """Chunks of at least :data:`MIN_CHUNK_SECONDS` (also refuses NaN: tiny chunks would mean
    millions of reverse processes) overlapping by at most half a chunk."""
    from diffusekit.errors import ConfigError

    if not MIN_CHUNK_SECONDS <= chunk_seconds:
        raise ConfigError(f"{chunk_loc} must be at least {MIN_CHUNK_SECONDS} s, got {chunk_seconds!r}",
                          loc=chunk_loc)
    if not 0 <= overlap_seconds <= chunk_seconds / 2:
        raise ConfigError(f"{overlap_loc} must be between 0 and half of {chunk_loc} ({chunk_seconds / 2:g} s), "
                          f"got {overlap_seconds!r}", loc=overlap_loc)


def enhance_waveform(pipe, noisy: torch.Tensor, seed: int = 0, predictive=None, sampler=None,
                     chunk_seconds: float = 4.0, overlap_seconds: float = 0.5, batch: int = 4,
                     sr: int = 16_000, transform: SpecTransform | None = None) -> torch.Tensor:
    """Enhance a 1-D waveform. Signals longer than ``chunk_seconds`` are processed in chunks that
    overlap by ``overlap_seconds`` and are cross-faded linearly; each chunk is normalised by its own
    noisy peak. Chunk k uses the per-sample generator seeded ``seed + k`` (batch-invariant)."""
    from diffusekit.errors import ConfigError

    tf = transform or SpecTransform()
    check_chunking(chunk_seconds, overlap_seconds)
    noisy = noisy.to(torch.float32)
    n = noisy.shape[-1]
    if n == 0:
        raise ConfigError("the audio is empty (0 samples); nothing to enhance", loc="noisy")
    if not bool(torch.isfinite(noisy).all()):
        raise ConfigError("the audio holds NaN or Inf samples", loc="noisy")
    chunk = int(chunk_seconds * sr)
    hop = chunk - int(overlap_seconds * sr)
    if n <= chunk:
        starts, length = [0], n
    else:
        starts = list(range(0, n - chunk + hop, hop))
        length = chunk
    padded = torch.nn.functional.pad(noisy, (0, max(0, starts[-1] + length - n)))
    pieces = torch.stack([padded[s:s + length] for s in starts])
    outs = []
    for b in range(0, len(starts), batch):
        wav = pieces[b:b + batch]
        Y, _, norm, L = tf.analyse(wav)
        gens = [torch.Generator().manual_seed(seed + k) for k in range(b, b + wav.shape[0])]
        X = enhance_spec(pipe, Y, gens, predictive, sampler)
        outs.append(tf.synthesise(X, norm, L))
    chunks = torch.cat(outs)
    if len(starts) == 1:
        return chunks[0, :n]
    out = torch.zeros(padded.shape[-1])
    weight = torch.zeros(padded.shape[-1])
    ov = length - hop
    fade = torch.ones(length)
    ramp = torch.linspace(0, 1, ov + 2)[1:-1]
    for k, s in enumerate(starts):
        w = fade.clone()
        if k > 0:
            w[:ov] = ramp
        if k < len(starts) - 1:
            w[-ov:] = ramp.flip(0)
        out[s:s + length] += chunks[k] * w
        weight[s:s + length] += w
    return (out / weight.clamp_min(1e-8))[:n]
