"""Solver benchmark: diffusekit's Gaussian solvers vs diffusers and k-diffusion (issue 4).

All samplers are driven by the same exact oracle denoiser (``diffusekit.testing.MixtureOracle``)
on a VP process (beta 0.1 -> 20, the continuous limit of diffusers' default DDPM schedule),
from the same initial noise x_T ~ N(0, I):

1. MMD^2 to fresh data at NFE 5 / 10 / 20 / 50 on an 8-mode 2-D ring and an 8-mode 16-D mixture,
   averaged over ``--draws`` independent draws (draw d: initial noise seed d, reference set seed
   12345 + d), printed as mean +- 2 standard errors. One draw is not enough near the floor: the
   unbiased estimator's spread between draws at n = 2000 (about 1e-3 on the ring) exceeds the
   10-NFE errors being compared. The row "exact probability-flow ODE" (adaptive RK45, rtol = atol
   = 1e-7, same initial noise) is what a perfect deterministic solver would score on the same
   draws; "two fresh data sets" is the estimator's own floor. diffusers schedulers run with their default configs (1000 linear-beta steps, their default
   spacing); k-diffusion samplers run on x~ = x / a(1) with their standard Karras sigmas (rho 7)
   between sigma~(t_min) and sigma~(1), then 0.
2. RMS error of the deterministic solvers vs a converged float64 reference (RK45, rtol = atol
   = 1e-10) from the same x_T, at the same end point (t_min = 1e-3; k-diffusion without the
   final jump to 0).
3. Per-step overhead in microseconds: batch 64 of shape (4, 8, 8), a network returning zeros,
   1 thread, 50 steps, best of 7 runs; total sampling time / NFE (diffusekit: ``sampler.sample``
   with the pipeline's Denoiser, so Prediction conversion and the finite-state check count).

Run: ``python benchmarks/solvers.py [--n 2000] [--draws 8] [--quick] [--nfes 5,10] [--skip mmd,rms,overhead]`` (needs ``pip install diffusekit[bench]``
for the peers; they are skipped when absent). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import diffusekit as dk
from diffusekit.testing.metrics import mmd
from diffusekit.testing.oracles import GaussianMixture, oracle_pipeline
from diffusekit_solvers import fit_gaussian_stats
from diffusekit_solvers.gaussian import point
from diffusekit_solvers.peers import (diffusers_scheduler, kdiffusion_sampling, run_diffusers, run_kdiffusion,
                                      sigma_form_oracle)
from _overhead import SHAPE, Zero, per_nfe_us  # noqa: E402 (sibling module of this script)

NFES = (5, 10, 20, 50)

# name -> (registry name, params, steps for a given NFE budget)
OURS = {
    "default (deis tAB3, logsnr)": ("deis", {}, lambda n: n),
    "default + data statistics (deis, teleport auto)": ("deis", {"teleport": "auto"}, lambda n: n),
    "dpm-solver++ + data statistics (teleport auto)": ("dpm-solver++", {"teleport": "auto"}, lambda n: n),
    "deis + teleport 0.2": ("deis", {"teleport": 0.2}, lambda n: n),
    "ddim": ("ddim", {}, lambda n: n),
    "dpm-solver-2": ("dpm-solver", {"order": 2}, lambda n: n),
    "dpm-solver-3": ("dpm-solver", {"order": 3}, lambda n: n),
    "dpm-solver++ (default: 2M, quadratic grid below 15 steps)": ("dpm-solver++", {}, lambda n: n),
    "dpm-solver++ 2M log-SNR (before)": ("dpm-solver++", {"variant": "2M", "schedule": "logsnr"}, lambda n: n),
    "dpm-solver++ 3M log-SNR (old default)": ("dpm-solver++", {"variant": "3M", "schedule": "logsnr"}, lambda n: n),
    "dpm-solver++ 3M": ("dpm-solver++", {"variant": "3M"}, lambda n: n),
    "dpm-solver++ 2S": ("dpm-solver++", {"variant": "2S"}, lambda n: n),
    "dpm-solver++ 2M-SDE": ("dpm-solver++", {"variant": "2M-SDE"}, lambda n: n),
    "unipc bh1": ("unipc", {"variant": "bh1"}, lambda n: n),
    "unipc bh2": ("unipc", {"variant": "bh2"}, lambda n: n),
    "dpm-solver++ 2S + teleport 0.2": ("dpm-solver++", {"variant": "2S", "teleport": 0.2}, lambda n: n),
    "heun (EDM)": ("heun", {}, lambda n: (n + 1) // 2),
    "euler (EDM)": ("euler", {}, lambda n: n),
}
DETERMINISTIC = [k for k in OURS if "SDE" not in k and "teleport" not in k]
DIFFUSERS = ["DPMSolverMultistep", "UniPCMultistep", "DDIM", "Euler"]
KDIFF = {"dpmpp_2m": lambda n: n, "euler": lambda n: n, "heun": lambda n: (n + 1) // 2}


def mixtures():
    return {"2-D ring (8 modes)": GaussianMixture.ring(8, 1.5, 0.1),
            "16-D mixture (8 modes)": GaussianMixture.random(8, 16, seed=0, spread=1.0, std=0.2)}


def karras(n, smin, smax, rho=7.0, zero=True):
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]) if zero else s


#: Gaussian statistics per mixture (what dk.train records), shared by every draw
_STATS: dict = {}


class Setup:
    def __init__(self, mix, n, dtype=torch.float32, draw=0):
        self.mix, self.n, self.dtype, self.draw = mix, n, dtype, draw
        self.process = dk.create("process", "vp")
        self.x_T = torch.randn(n, mix.dim, generator=torch.Generator().manual_seed(draw), dtype=dtype)
        self.ref = mix.sample(n, torch.Generator().manual_seed(12345 + draw), dtype=torch.float64)
        self.x0_fn = sigma_form_oracle(mix)
        self.p_hi, self.p_lo = point(self.process, self.process.t_max), point(self.process, self.process.t_min)
        self.bw = tuple(b * math.sqrt(mix.dim / 2) for b in (0.1, 0.2, 0.5, 1.0, 2.0))

    def mmd(self, x):
        return mmd(x, self.ref, bandwidths=self.bw)

    def ours(self, name, params, steps, x_T=None, dtype=None):
        sampler = dk.create("sampler", name, steps=steps, **params)
        pipe = oracle_pipeline(self.process, self.mix, sampler=sampler)
        if params.get("teleport"):  # Gaussian statistics of 20k training samples (what dk.train records)
            if id(self.mix) not in _STATS:
                _STATS[id(self.mix)] = fit_gaussian_stats(pipe, self.mix.sample(20_000, torch.Generator().manual_seed(5)))
            pipe.buffers.update(_STATS[id(self.mix)])
        x = self.x_T if x_T is None else x_T
        out = pipe.sample(x.shape[0], x_init=x.to(dtype or x.dtype),
                          generator=[torch.Generator().manual_seed(i) for i in range(x.shape[0])]
                          if sampler.stochastic else None)
        return out, pipe.last_nfe

    def exact_ode(self):
        """The probability-flow ODE from the same x_T, solved to rtol = atol = 1e-7 (RK45)."""
        if "_exact" not in self.__dict__:
            ode = dk.create("sampler", "ode", rtol=1e-7, atol=1e-7)
            pipe = oracle_pipeline(self.process, self.mix, sampler=ode)
            self._exact = (pipe.sample(self.x_T.shape[0], x_init=self.x_T), pipe.last_nfe)
        return self._exact

    def fresh(self):
        """A fresh data set (the estimator's floor)."""
        return self.mix.sample(self.n, torch.Generator().manual_seed(777 + self.draw)), 0

    def kdiff(self, name, steps, zero=True, x_T=None):
        x = (self.x_T if x_T is None else x_T) / self.p_hi.a
        sig = karras(steps if zero else steps + 1, self.p_lo.sigma, self.p_hi.sigma, zero=zero).to(x.dtype)
        out, nfe = run_kdiffusion(name, self.x0_fn, x, sig)
        return out * (1.0 if zero else self.p_lo.a), nfe

    def diffusers(self, name, steps):
        return run_diffusers(diffusers_scheduler(name), self.x0_fn, self.x_T, steps)


class Cell:
    """MMD^2 of one sampler at one NFE budget on every draw."""

    def __init__(self, values, nfe):
        self.values = torch.tensor(values, dtype=torch.float64)
        self.nfe = nfe

    @staticmethod
    def _stats(v):
        se = float(v.std() / len(v) ** 0.5) if len(v) > 1 else float("nan")
        return float(v.mean()), se

    def stats(self):
        """(mean, standard error) over the draws."""
        return self._stats(self.values)

    def excess(self, ref: "Cell"):
        """(mean, standard error) of the paired difference to ``ref`` on the same draws."""
        return self._stats(self.values - ref.values)


EXACT = "exact probability-flow ODE (RK45, 1e-7; NFE in brackets)"
FRESH = "two fresh data sets (estimator floor)"


def mmd_table(draws, nfes, have_kd, have_df, only=()):
    """{row label: per mixture, per NFE: Cell}; ``draws`` holds one list of Setups (one per
    draw) for each mixture; ``only``: substrings selecting rows (the exact-ODE and fresh-data
    rows are always kept)."""
    rows = {}
    for label, (name, params, st) in OURS.items():
        rows[f"diffusekit {label}"] = lambda s, n, name=name, params=params, st=st: s.ours(name, params, st(n))
    if have_df:
        for name in DIFFUSERS:
            rows[f"diffusers {name}"] = lambda s, n, name=name: s.diffusers(name, n)
    if have_kd:
        for name, st in KDIFF.items():
            rows[f"k-diffusion {name}"] = lambda s, n, name=name, st=st: s.kdiff(name, st(n))
    if only:
        rows = {k: v for k, v in rows.items() if any(o in k for o in only)}
    rows[EXACT] = lambda s, n: s.exact_ode()
    rows[FRESH] = lambda s, n: s.fresh()
    out = {}
    for label, run in rows.items():
        per_mix = []
        for setups in draws:
            cells = []
            for n in nfes:
                vals, nfe = [], None
                for s in setups:
                    x, nfe = run(s, n)
                    vals.append(s.mmd(x))
                cells.append(Cell(vals, nfe))
            per_mix.append(cells)
        out[label] = per_mix
    return out


def rms_table(setups, nfes, have_kd):
    from diffusekit_solvers.peers import sigma_form_oracle  # noqa: F401  (same oracle as above)

    out = {}
    for s in setups:
        x64 = s.x_T[:512].double()
        ode = dk.create("sampler", "ode", rtol=1e-10, atol=1e-10)
        pipe = oracle_pipeline(s.process, s.mix, sampler=ode)
        ref = pipe.sample(x64.shape[0], x_init=x64)
        for label in DETERMINISTIC:
            name, params, st = OURS[label]
            vals = [float(((s.ours(name, params, st(n), x_T=x64)[0] - ref) ** 2).mean().sqrt()) for n in nfes]
            out.setdefault(f"diffusekit {label}", []).append(vals)
        if have_kd:
            for name, st in KDIFF.items():
                vals = [float(((s.kdiff(name, st(n), zero=False, x_T=x64)[0] - ref) ** 2).mean().sqrt())
                        for n in nfes]
                out.setdefault(f"k-diffusion {name}", []).append(vals)
    return out


def overhead_table(have_kd, have_df, steps=50, repeats=7):
    torch.manual_seed(0)
    shape = SHAPE
    x_T = torch.randn(shape)

    def timeit(fn, nfe):
        return per_nfe_us(fn, nfe, repeats)

    process = dk.create("process", "vp")
    out = {}
    for label, (name, params, st) in OURS.items():
        if params.get("teleport"):
            continue
        sampler = dk.create("sampler", name, steps=st(steps), **params)
        pipe = dk.Pipeline(process=process, network=Zero(), parameterization="x0", sampler=sampler)
        den = pipe.denoiser()
        gen = torch.Generator().manual_seed(0) if sampler.stochastic else None  # one generator, like the peers

        def run(sampler=sampler, den=den, gen=gen):
            den.reset_nfe()
            sampler.sample(den, process, x_T, generator=gen)
            return den.nfe

        out[f"diffusekit {label}"] = timeit(run, run())
    # the bare tensor arithmetic of one DPM-Solver++(2M) step in the same x0 form as the rows
    # above: x' = w x + d0 x0 + d1 x0_prev and one finite probe, with and without the network call
    net = Zero()
    t_vec = torch.full((x_T.shape[0],), 0.5)

    def bare(with_net=True):
        x, prev = x_T, torch.zeros_like(x_T)
        x0 = torch.zeros_like(x_T)
        for _ in range(steps):
            if with_net:
                x0 = net(x, t_vec)
            x = x * 0.9
            x.add_(x0, alpha=0.2).add_(prev, alpha=-0.1)
            prev = x0
            x.sum()
        return x

    out["bare 2M step: free network + update + finite probe"] = timeit(bare, steps)
    out["bare 2M step: update + finite probe only"] = timeit(lambda: bare(False), steps)
    zero_fn = lambda x, s: torch.zeros_like(x)  # noqa: E731
    if have_kd:
        ks = kdiffusion_sampling()
        for name, st in KDIFF.items():
            s_ = karras(st(steps), 0.01, 150.0).float()
            nfe = run_kdiffusion(name, zero_fn, x_T, s_)[1]
            out[f"k-diffusion {name}"] = timeit(lambda: getattr(ks, f"sample_{name}")(
                lambda x, s: torch.zeros_like(x), x_T, s_, disable=True), nfe)
    if have_df:
        for name in DIFFUSERS:
            sch = diffusers_scheduler(name)

            def run():
                sch.set_timesteps(steps)
                x = x_T * sch.init_noise_sigma
                for t in sch.timesteps:
                    inp = sch.scale_model_input(x, t)
                    x = sch.step(torch.zeros_like(inp), t, x).prev_sample
                return x

            out[f"diffusers {name}"] = timeit(run, steps)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per MMD estimate (MMD costs O(n^2))")
    ap.add_argument("--draws", type=int, default=8, help="independent (x_T, reference) draws per MMD cell")
    ap.add_argument("--rows", default="", help="comma list of substrings: only the MMD rows whose label holds one")
    ap.add_argument("--mixtures", default="", help="comma list of substrings of the mixture names (default: both)")
    ap.add_argument("--quick", action="store_true", help="NFE 10 only, n = 1000, 2 draws")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: mmd,rms,overhead")
    ap.add_argument("--nfes", default="", help="comma list of NFE budgets (default 5,10,20,50)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    nfes = (10,) if args.quick else NFES
    if args.nfes:
        nfes = tuple(int(v) for v in args.nfes.split(","))
    n = 1000 if args.quick else args.n
    have_kd = kdiffusion_sampling() is not None
    have_df = diffusers_scheduler("DDIM") is not None
    if not (have_kd and have_df):
        print(f"(peers missing: k-diffusion={have_kd}, diffusers={have_df}; pip install diffusekit[bench])")
    skip = set(filter(None, args.skip.split(",")))
    setups = [Setup(m, n) for m in mixtures().values()]
    names = list(mixtures())
    if "mmd" not in skip:
        n_draws = 2 if args.quick else args.draws
        chosen = {k: m for k, m in mixtures().items()
                  if not args.mixtures or any(o in k for o in args.mixtures.split(","))}
        mmd_names = list(chosen)
        draws = [[Setup(m, n, draw=d) for d in range(n_draws)] for m in chosen.values()]
        only = tuple(filter(None, args.rows.split(",")))
        res = mmd_table(draws, nfes, have_kd, have_df, only)
        for k, name in enumerate(mmd_names):
            print(f"\n### MMD^2 to fresh data, {name} (n = {n}, mean +- 2 s.e. over {n_draws} draws; "
                  "last columns: paired excess over the exact ODE on the same draws)\n")
            print("| sampler | " + " | ".join(f"NFE {v}" for v in nfes) + " | "
                  + " | ".join(f"excess, NFE {v}" for v in nfes) + " |")
            print("|---|" + "---|" * (2 * len(nfes)))
            for label, per in res.items():
                cells = []
                for c, v in zip(per[k], nfes):
                    m, se = c.stats()
                    cells.append(f"{m:.2e} +- {2 * se:.0e}" + ("" if c.nfe == v else f" ({c.nfe})"))
                for c, ref in zip(per[k], res[EXACT][k]):
                    m, se = c.excess(ref)
                    cells.append(f"{m:.2e} +- {2 * se:.0e}")
                print(f"| {label} | " + " | ".join(cells) + " |")
            peers = {lab: per[k] for lab, per in res.items() if lab.startswith(("diffusers", "k-diffusion"))}
            ours = {lab: res[lab][k] for lab in ("diffusekit default + data statistics (deis, teleport auto)",
                                                 "diffusekit dpm-solver++ (default: 2M, quadratic grid below 15 steps)",
                                                 "diffusekit dpm-solver++ + data statistics (teleport auto)") if lab in res}
            if peers and ours:
                for j, v in enumerate(nfes):
                    best_label, best = min(peers.items(), key=lambda kv: kv[1][j].stats()[0])
                    b, b_ex = best[j].stats()[0], best[j].excess(res[EXACT][k][j])[0]
                    print(f"\nNFE {v}, best peer {best_label} ({b:.2e}; excess {b_ex:.2e}): "
                          + "; ".join(f"{lab.replace('diffusekit ', '')}: ratio {c[j].stats()[0] / b:.3f}, "
                                      f"excess ratio {c[j].excess(res[EXACT][k][j])[0] / b_ex:.3f}"
                                      for lab, c in ours.items()))
    if "rms" not in skip:
        res = rms_table(setups, nfes, have_kd)
        for k, name in enumerate(names):
            print(f"\n### RMS error vs converged float64 ODE (same x_T), {name}\n")
            print("| sampler | " + " | ".join(f"NFE {v}" for v in nfes) + " |")
            print("|---|" + "---|" * len(nfes))
            for label, per in res.items():
                print(f"| {label} | " + " | ".join(f"{v:.2e}" for v in per[k]) + " |")
    if "overhead" not in skip:
        res = overhead_table(have_kd, have_df)
        print("\n### Per-step overhead (us), batch 64 x (4, 8, 8), zero network, 1 thread\n")
        print("| sampler | us / step |\n|---|---|")
        for label, us in res.items():
            print(f"| {label} | {us:.1f} |")


if __name__ == "__main__":
    main()
