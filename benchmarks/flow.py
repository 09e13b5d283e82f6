"""Flow-matching benchmark: diffusekit's flow plugin vs torchcfm (issue 20).

torchcfm (MIT, Tong et al.) provides the flow-matching training targets and samples with
torchdyn's ``NeuralODE`` (its examples: ``NeuralODE(torch_wrapper(model), solver=...)`` and
``node.trajectory(x0, t_span=torch.linspace(0, 1, n))``); it runs noise at t = 0 and data at
t = 1, so its vector field here is v(x, s) = -u(x, 1 - s) with u the velocity diffusekit uses
(data at t = 0). Both stacks are driven by the **same exact velocity field**: the velocity of a
Gaussian mixture (``diffusekit_flow.MixtureVelocity``, float64 inside), from the same x_1 ~ N(0, I).

1. Agreement: diffusekit ``flow-euler`` / ``flow-midpoint`` with ``shift=1, t_start=1`` and
   torchdyn ``euler`` / ``midpoint`` on the same uniform grid give the same samples (max abs diff).
2. MMD^2 to fresh data at NFE 4 / 10 / 20 on the 8-mode 2-D ring and an 8-mode 16-D mixture:
   torchdyn euler, midpoint, rk4 on uniform grids; diffusekit's flow samplers (default grid,
   shift 0.5) and the solvers plugin's DPM-Solver++ / UniPC through the prediction conversions.
3. Per-step overhead in microseconds: batch 64 of shape (4, 8, 8), a network returning zeros,
   1 thread, 50 steps, best of 7 (diffusekit: ``sampler.sample`` with the pipeline's Denoiser, so the
   Prediction and the finite-state check count; torchdyn: ``NeuralODE.trajectory``).
4. Minibatch OT coupling of a (256, 2) batch: time per batch and transport cost, diffusekit's
   ``couple(..., "ot")`` (scipy's linear_sum_assignment) vs torchcfm's
   ``ExactOptimalTransportConditionalFlowMatcher`` (POT's exact EMD plan, pairs drawn from it).

Run: ``python benchmarks/flow.py [--n 2000] [--quick] [--skip agree,mmd,overhead,ot]``
(torchcfm from ``pip install diffusekit[bench]``; peer rows are skipped when it is absent).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import time

import torch

import diffusekit as dk
from diffusekit.testing.metrics import mmd
from diffusekit.testing.oracles import GaussianMixture
from diffusekit_flow import MixtureVelocity, velocity_oracle_pipeline
from diffusekit_flow.couplings import couple, transport_cost
from _overhead import SHAPE, Zero, per_nfe_us  # noqa: E402 (sibling module of this script)

NFES = (4, 10, 20)
OURS = {  # label -> (registry name, params, steps for an NFE budget)
    "flow-euler (shift 1 = uniform)": ("flow-euler", {"shift": 1.0}, lambda n: n),
    "flow-euler (default shift 0.5)": ("flow-euler", {}, lambda n: n),
    "flow-heun (default)": ("flow-heun", {}, lambda n: (n + 1) // 2),
    "flow-midpoint (shift 1 = uniform)": ("flow-midpoint", {"shift": 1.0}, lambda n: n // 2),
    "flow-midpoint (default sampler, shift 0.5)": ("flow-midpoint", {}, lambda n: n // 2),
    "dpm-solver++ 3M (logsnr)": ("dpm-solver++", {}, lambda n: n),
    "unipc bh2 (logsnr)": ("unipc", {}, lambda n: n),
}
PEER = {"euler": lambda n: n, "midpoint": lambda n: n // 2, "rk4": lambda n: max(1, n // 4)}


def have_torchcfm() -> bool:
    try:
        import torchcfm  # noqa: F401
        from torchdyn.core import NeuralODE  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


class CFMField(torch.nn.Module):
    """torchcfm / torchdyn convention (noise at s = 0): v(x, s) = -u(x, 1 - s); counts calls."""

    def __init__(self, u):
        super().__init__()
        self.u = u
        self.calls = 0

    def forward(self, t, x, *args, **kwargs):
        self.calls += 1
        tau = (1 - t).to(x.dtype).reshape(()).expand(x.shape[0])
        return -self.u(x, tau)


def neural_ode(field, solver):
    """torchdyn's NeuralODE (its "no nn.Parameters" notice silenced)."""
    from torchdyn.core import NeuralODE

    with contextlib.redirect_stdout(io.StringIO()):
        return NeuralODE(field, solver=solver, sensitivity="autograd")


def run_torchdyn(field, x1, solver, steps):
    node = neural_ode(field, solver)
    field.calls = 0
    with torch.no_grad():
        traj = node.trajectory(x1, t_span=torch.linspace(0, 1, steps + 1, dtype=x1.dtype))
    return traj[-1], field.calls


def mixtures():
    return {"2-D ring (8 modes)": GaussianMixture.ring(8, 1.5, 0.1),
            "16-D mixture (8 modes)": GaussianMixture.random(8, 16, seed=0, spread=1.0, std=0.2)}


class Setup:
    def __init__(self, mix, n):
        self.mix, self.n = mix, n
        self.process = dk.create("process", "rectified-flow")
        self.pipe = velocity_oracle_pipeline(self.process, mix)
        self.x1 = torch.randn(n, mix.dim, generator=torch.Generator().manual_seed(0))
        self.ref = mix.sample(n, torch.Generator().manual_seed(12345), dtype=torch.float64)
        self.bw = tuple(b * math.sqrt(mix.dim / 2) for b in (0.1, 0.2, 0.5, 1.0, 2.0))
        self.field = CFMField(MixtureVelocity(mix, self.process))

    def mmd(self, x):
        return mmd(x, self.ref, bandwidths=self.bw)

    def ours(self, name, params, steps, x=None):
        x = self.x1 if x is None else x
        out = self.pipe.sample(x.shape[0], x_init=x, sampler={"name": name, "steps": steps, **params})
        return out, self.pipe.last_nfe


def agreement(setups):
    rows = []
    for s in setups:
        for ours, peer, steps in (("flow-euler", "euler", 20), ("flow-midpoint", "midpoint", 10)):
            a, nfe_a = s.ours(ours, {"shift": 1.0, "t_start": 1.0}, steps)
            b, nfe_b = run_torchdyn(s.field, s.x1, peer, steps)
            rows.append((s.mix.dim, ours, peer, nfe_a, nfe_b, float((a - b).abs().max())))
    return rows


def mmd_table(setups, nfes, peer):
    out = {}
    for label, (name, params, st) in OURS.items():
        out[f"diffusekit {label}"] = [[(s.mmd(x), nfe) for x, nfe in (s.ours(name, params, st(n)) for n in nfes)]
                                      for s in setups]
    if peer:
        for solver, st in PEER.items():
            out[f"torchcfm + torchdyn {solver}"] = [
                [(s.mmd(x), nfe) for x, nfe in (run_torchdyn(s.field, s.x1, solver, st(n)) for n in nfes)]
                for s in setups]
    return out


def overhead_table(peer, steps=50, repeats=7):
    shape = SHAPE
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    def timeit(fn, nfe):
        return per_nfe_us(fn, nfe, repeats)

    process = dk.create("process", "rectified-flow")
    out = {}
    for name, st in (("flow-euler", lambda n: n), ("flow-midpoint", lambda n: n // 2), ("ddim", lambda n: n)):
        sampler = dk.create("sampler", name, steps=st(steps))
        pipe = dk.Pipeline(process=process, network=Zero(), parameterization="velocity", sampler=sampler)
        den = pipe.denoiser()

        def run(sampler=sampler, den=den):
            den.reset_nfe()
            with torch.no_grad():
                sampler.sample(den, process, x_T)
            return den.nfe

        label = "ddim (solvers plugin, same velocity model)" if name == "ddim" else name
        out[f"diffusekit {label}"] = timeit(run, run())
    if peer:
        class ZeroField(torch.nn.Module):
            def forward(self, t, x, *args, **kwargs):
                return torch.zeros_like(x)

        for solver, st in (("euler", lambda n: n), ("midpoint", lambda n: n // 2)):
            node = neural_ode(ZeroField(), solver)
            span = torch.linspace(0, 1, st(steps) + 1)
            nfe = steps

            def run(node=node, span=span):
                with torch.no_grad():
                    node.trajectory(x_T, t_span=span)

            out[f"torchcfm + torchdyn {solver}"] = timeit(run, nfe)
    return out


def ot_table(peer, batch=256, repeats=20):
    g = torch.Generator().manual_seed(0)
    mix = GaussianMixture.ring(8, 1.5, 0.1)
    out = {}
    xs = [mix.sample(batch, g) for _ in range(repeats)]
    zs = [torch.randn(batch, 2, generator=g) for _ in range(repeats)]
    t0 = time.perf_counter()
    costs = [transport_cost(x, couple(x, z, "ot")) for x, z in zip(xs, zs)]
    out["diffusekit couple(ot) (scipy linear_sum_assignment)"] = ((time.perf_counter() - t0) / repeats * 1e3,
                                                                  sum(costs) / repeats)
    out["independent pairing"] = (0.0, sum(transport_cost(x, z) for x, z in zip(xs, zs)) / repeats)
    if peer:
        from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher

        fm = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        costs = []
        for x, z in zip(xs, zs):
            x0, x1 = fm.ot_sampler.sample_plan(z, x)  # torchcfm: x0 = noise, x1 = data
            costs.append(transport_cost(x1, x0))
        out["torchcfm OTPlanSampler exact (POT emd, pairs drawn from the plan)"] = (
            (time.perf_counter() - t0) / repeats * 1e3, sum(costs) / repeats)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per MMD estimate")
    ap.add_argument("--quick", action="store_true", help="NFE 10 only, n = 1000")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: agree,mmd,overhead,ot")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    peer = have_torchcfm()
    if not peer:
        print("(torchcfm / torchdyn not installed: peer rows skipped; pip install diffusekit[bench])")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    nfes = (10,) if args.quick else NFES
    n = 1000 if args.quick else args.n
    skip = set(filter(None, args.skip.split(",")))
    setups = [Setup(m, n) for m in mixtures().values()]
    names = list(mixtures())
    if "agree" not in skip and peer:
        print("\n### Same exact velocity, same uniform grid: diffusekit vs torchdyn (float32)\n")
        print("| data dim | diffusekit | torchdyn | NFE ours | NFE theirs | max abs diff |\n|---|---|---|---|---|---|")
        for d, a, b, na, nb, diff in agreement(setups):
            print(f"| {d} | {a} (shift 1, t_start 1) | {b} | {na} | {nb} | {diff:.1e} |")
    if "mmd" not in skip:
        res = mmd_table(setups, nfes, peer)
        floor = [abs(s.mmd(s.mix.sample(n, torch.Generator().manual_seed(777)))) for s in setups]
        for k, name in enumerate(names):
            print(f"\n### MMD^2 to fresh data, {name} (n = {n}; two fresh data sets: {floor[k]:.1e})\n")
            print("| sampler | " + " | ".join(f"NFE {v}" for v in nfes) + " |")
            print("|---|" + "---:|" * len(nfes))
            for label, per in res.items():
                cells = [f"{m:.2e}" + ("" if nfe == v else f" ({nfe})") for (m, nfe), v in zip(per[k], nfes)]
                print(f"| {label} | " + " | ".join(cells) + " |")
    if "overhead" not in skip:
        res = overhead_table(peer)
        print("\n### Per-step overhead (us per network evaluation), batch 64 x (4, 8, 8), zero network, 1 thread\n")
        print("| sampler | us / NFE |\n|---|---:|")
        for label, us in res.items():
            print(f"| {label} | {us:.1f} |")
    if "ot" not in skip:
        res = ot_table(peer)
        print("\n### Minibatch OT coupling, batch 256 of the 2-D ring vs N(0, I) (mean of 20 batches)\n")
        print("| coupling | ms / batch | mean |x0 - x1|^2 |\n|---|---:|---:|")
        for label, (ms, cost) in res.items():
            print(f"| {label} | {ms:.1f} | {cost:.3f} |")
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
