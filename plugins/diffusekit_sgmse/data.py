"""Synthetic speech-enhancement corpus made at run time (no speech corpus can be downloaded).

Clean speech: sentences spoken by ``espeak-ng`` (Debian package ``espeak-ng``) with several
voice variants, speeds and pitches, resampled to 16 kHz. Noise: white, pink (1/f), brown
(1/f^2), babble (3-5 other utterances of the same split) and mains hum (50 / 60 Hz and
harmonics), mixed at an SNR drawn from [snr_min, snr_max] dB. The reverberant variant
convolves the clean speech with a synthetic room impulse response (direct path + exponentially
decaying Gaussian tail, RT60 0.2-0.7 s) and keeps the dry speech as the target.

Train and test are disjoint in *both* sentence text and voice, so test scores measure
generalisation to unseen speakers and words.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import ConfigError
from diffusekit.state import Example

SAMPLE_RATE = 16_000

_SUBJECTS = ["the old man", "a young girl", "my neighbour", "the teacher", "our captain", "the farmer",
             "a tired doctor", "the small boy", "her brother", "the pilot", "a quiet student", "the baker"]
_VERBS = ["carried", "painted", "found", "opened", "watched", "repaired", "described", "followed",
          "cleaned", "remembered", "bought", "dropped"]
_OBJECTS = ["a heavy wooden box", "the bright red door", "seven yellow apples", "an ancient map",
            "the broken window", "a long letter", "the silver bicycle", "two green bottles",
            "the frozen river", "a paper kite", "the empty garden", "a warm blanket"]
_TAILS = ["before the storm arrived", "near the station", "on a cold morning", "after dinner",
          "without saying a word", "in the late afternoon", "beside the lake", "during the holiday"]

TRAIN_VOICES = ["en-us+m1", "en-us+m3", "en-us+f1", "en-us+f3", "en+m2", "en+f2", "en-gb-x-rp+m4",
                "en-gb-scotland+f5"]
TEST_VOICES = ["en-us+m6", "en+f4", "en-029+m7", "en-gb-x-gbcwmd+f1"]


def sentences(split: str) -> list[str]:
    """Deterministic sentence list; test subjects and objects never occur in train."""
    rng = np.random.default_rng(12345)
    subj_test, obj_test = set(_SUBJECTS[-3:]), set(_OBJECTS[-3:])
    out = []
    for s in _SUBJECTS:
        for o in _OBJECTS:
            is_test = s in subj_test and o in obj_test
            is_train = s not in subj_test and o not in obj_test
            if not (is_test if split == "test" else is_train):
                continue
            out.append(f"{s} {rng.choice(_VERBS)} {o} {rng.choice(_TAILS)}.")
    return out


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def missing_speech_requirements() -> list[str]:
    """What the synthetic speech corpus needs and this machine lacks (empty: it can be built):
    the espeak-ng program and the ``soundfile`` / ``torchaudio`` packages (``audio`` extra)."""
    import importlib.util

    missing = [] if espeak_available() else ["espeak-ng (apt-get install -y espeak-ng)"]
    for mod in ("soundfile", "torchaudio"):
        try:
            ok = importlib.util.find_spec(mod) is not None and bool(__import__(mod))
        except Exception:  # a package that is present but cannot be imported counts as missing
            ok = False
        if not ok:
            missing.append(f"{mod} (pip install diffusekit[audio])")
    return missing


def _cache_dir() -> Path:
    d = Path(os.environ.get("DIFFUSEKIT_CACHE", Path.home() / ".cache" / "diffusekit")) / "sgmse_speech"
    d.mkdir(parents=True, exist_ok=True)
    return d


def speak(text: str, voice: str, speed: int = 160, pitch: int = 50) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng; float32 waveform at 16 kHz (cached on disk)."""
    if not espeak_available():
        raise ConfigError("espeak-ng is not installed; install it with `apt-get install -y espeak-ng` "
                          "(the synthetic SGMSE corpus needs it)", loc="data")
    import soundfile as sf
    import torchaudio.functional as AF

    key = hashlib.sha1(f"{text}|{voice}|{speed}|{pitch}".encode()).hexdigest()[:16]
    path = _cache_dir() / f"{key}.wav"
    if not path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                           check=True, capture_output=True)
            wav, sr = sf.read(str(raw), dtype="float32")
            wav16 = AF.resample(torch.from_numpy(wav), sr, SAMPLE_RATE).numpy()
            tmp_out = Path(tmp) / "out.wav"  # private name: concurrent writers never collide
            sf.write(str(tmp_out), wav16, SAMPLE_RATE, subtype="FLOAT")
            shutil.move(str(tmp_out), str(path) + f".{os.getpid()}.tmp")
            os.replace(str(path) + f".{os.getpid()}.tmp", path)
    wav, _ = sf.read(str(path), dtype="float32")
    return wav


# ------------------------------------------------------------------------------------- noises
def _coloured(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    out = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (out / (out.std() + 1e-12)).astype(np.float32)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
    t = np.arange(n) / SAMPLE_RATE
    out = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
              for k in range(1, 8))
    out = out + 0.05 * rng.standard_normal(n)
    return (out / out.std()).astype(np.float32)


def babble(n: int, pool: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(3, 6))):
        u = pool[int(rng.integers(len(pool)))]
        u = np.tile(u, math.ceil(n / len(u)) + 1)
        start = int(rng.integers(len(u) - n))
        out += u[start:start + n] / (u.std() + 1e-8)
    return out / (out.std() + 1e-8)


NOISE_TYPES = ("white", "pink", "brown", "babble", "hum")


def make_noise(kind: str, n: int, pool: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(n).astype(np.float32)
    if kind == "pink":
        return _coloured(n, 1.0, rng)
    if kind == "brown":
        return _coloured(n, 2.0, rng)
    if kind == "babble":
        return babble(n, pool, rng)
    if kind == "hum":
        return hum(n, rng)
    raise ConfigError(f"unknown noise type {kind!r}; choose from {NOISE_TYPES}", loc="data.noise")


def synthetic_rir(rng: np.random.Generator, rt60: float | None = None) -> np.ndarray:
    """Direct path + exponentially decaying Gaussian tail with decay 60 dB over rt60 seconds."""
    rt60 = rt60 if rt60 is not None else float(rng.uniform(0.2, 0.7))
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078
    delay = int(rng.integers(int(0.002 * SAMPLE_RATE), int(0.01 * SAMPLE_RATE)))
    tail[:delay] = 0
    rir = np.zeros(n, np.float64)
    rir[0] = 1.0
    rir += 0.4 * tail / np.sqrt((tail ** 2).sum() + 1e-12)
    return (rir / np.abs(rir).max()).astype(np.float32)


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """clean + s * noise with 10 log10(|clean|^2 / |s noise|^2) = snr_db."""
    p_c = float((clean ** 2).mean())
    p_n = float((noise ** 2).mean()) + 1e-12
    return (clean + noise * math.sqrt(p_c / (p_n * 10 ** (snr_db / 10)))).astype(np.float32)


@dataclass
class Pair:
    clean: np.ndarray
    noisy: np.ndarray
    text: str
    voice: str
    noise: str
    snr_db: float
    reverb: bool


class CorpusConfig(ComponentConfig):
    split: Literal["train", "test"] = "train"
    n: int = Field(200, ge=1, le=100_000, description="number of clean / noisy pairs")
    snr_min: float = Field(-5.0, ge=-30, le=60, description="lowest mixing SNR in dB")
    snr_max: float = Field(15.0, ge=-30, le=60, description="highest mixing SNR in dB")
    noises: tuple[str, ...] = Field(NOISE_TYPES, min_length=1, description="noise types to draw from")
    reverb: float = Field(0.0, ge=0, le=1, description="probability of the reverberant variant")
    seed: int = 0


def corpus(split: str = "train", n: int = 200, snr_min: float = -5.0, snr_max: float = 15.0,
           noises: tuple[str, ...] = NOISE_TYPES, reverb: float = 0.0, seed: int = 0) -> list[Pair]:
    """Clean / noisy 16 kHz pairs; deterministic in (split, seed)."""
    for k in noises:
        if k not in NOISE_TYPES:
            raise ConfigError(f"unknown noise type {k!r}; choose from {NOISE_TYPES}", loc="data.noises")
    if snr_max < snr_min:
        raise ConfigError(f"snr_max ({snr_max}) must be >= snr_min ({snr_min})", loc="data.snr_max")
    rng = np.random.default_rng(seed + (0 if split == "train" else 7_777_777))
    texts = sentences(split)
    voices = TRAIN_VOICES if split == "train" else TEST_VOICES
    pool = [speak(texts[i % len(texts)], voices[(i * 7) % len(voices)]) for i in range(min(12, len(texts)))]
    out = []
    for i in range(n):
        text = texts[int(rng.integers(len(texts)))]
        voice = voices[int(rng.integers(len(voices)))]
        clean = speak(text, voice, speed=int(rng.integers(140, 190)), pitch=int(rng.integers(35, 70)))
        clean = clean / (np.abs(clean).max() + 1e-8) * float(rng.uniform(0.3, 0.9))
        is_rev = bool(rng.uniform() < reverb)
        src = np.convolve(clean, synthetic_rir(rng))[: len(clean)].astype(np.float32) if is_rev else clean
        kind = noises[int(rng.integers(len(noises)))]
        snr = float(rng.uniform(snr_min, snr_max))
        noisy = mix_at_snr(src, make_noise(kind, len(clean), pool, rng), snr)
        if is_rev:  # keep the reverberant mixture's level comparable to the dry target
            noisy = noisy * (np.abs(clean).max() / (np.abs(noisy).max() + 1e-8))
        out.append(Pair(clean.astype(np.float32), noisy, text, voice, kind, snr, is_rev))
    return out


class SpectrogramDataConfig(CorpusConfig):
    frames: int = Field(64, ge=8, le=4096, description="frames per training crop (multiple of 8)")
    crops_per_pair: int = Field(2, ge=1, le=64)
    cache: bool = Field(True, description="keep the finished crops on disk (DIFFUSEKIT_CACHE) and reuse them")


# bump when the corpus, the front end or the cropping changes, so stale caches are not reused
SPECTROGRAM_CACHE_VERSION = 1


def spectrogram_dataset(split: str = "train", n: int = 200, snr_min: float = -5.0, snr_max: float = 15.0,
                        noises: tuple[str, ...] = NOISE_TYPES, reverb: float = 0.0, seed: int = 0,
                        frames: int = 64, crops_per_pair: int = 2, cache: bool = True) -> Example:
    """Training data for a pipeline: ``Example(x=clean X, cond=noisy Y)``, complex (N, 256, frames).

    Each pair is normalised by its noisy peak, transformed (STFT + compression) and cut into
    random crops of ``frames`` frames (zero-padded when shorter). With ``cache`` the crops are
    written once (atomically, safetensors, keyed by every argument and the espeak-ng version)
    under ``DIFFUSEKIT_CACHE/sgmse_speech`` and loaded from there afterwards: building 1,000
    pairs takes minutes, loading them a fraction of a second.
    """
    args = dict(split=split, n=n, snr_min=float(snr_min), snr_max=float(snr_max), noises=list(noises),
                reverb=float(reverb), seed=seed, frames=frames, crops_per_pair=crops_per_pair)
    if not cache:
        return _build_spectrogram_dataset(**args)
    from safetensors.torch import load_file, save_file

    from diffusekit.files import atomic_write, canonical_json, sha256_text

    key = sha256_text(canonical_json({**args, "version": SPECTROGRAM_CACHE_VERSION, "espeak": _espeak_version()}))
    path = _cache_dir() / f"crops-{key[:24]}.safetensors"
    if path.exists():
        try:
            t = load_file(str(path))
            return Example(torch.view_as_complex(t["x"]), torch.view_as_complex(t["cond"]))
        except Exception:  # a damaged cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    data = _build_spectrogram_dataset(**args)
    tensors = {"x": torch.view_as_real(data.x).contiguous(), "cond": torch.view_as_real(data.cond).contiguous()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"args": canonical_json(args)}))
    return data


def _espeak_version() -> str:
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"


def _build_spectrogram_dataset(split, n, snr_min, snr_max, noises, reverb, seed, frames, crops_per_pair) -> Example:
    from .transforms import SpecTransform

    noises = tuple(noises)
    tf = SpecTransform()
    rng = np.random.default_rng(seed + 99)
    xs, ys = [], []
    for p in corpus(split, n, snr_min, snr_max, noises, reverb, seed):
        y_spec, x_spec, _, _ = tf.analyse(torch.from_numpy(p.noisy), torch.from_numpy(p.clean))
        total = y_spec.shape[-1]
        for _ in range(crops_per_pair):
            if total <= frames:
                pad = frames - total
                xs.append(torch.nn.functional.pad(x_spec, (0, pad)))
                ys.append(torch.nn.functional.pad(y_spec, (0, pad)))
            else:
                s = int(rng.integers(total - frames))
                xs.append(x_spec[:, s:s + frames])
                ys.append(y_spec[:, s:s + frames])
    return Example(torch.stack(xs), torch.stack(ys))
