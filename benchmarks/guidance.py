"""Guidance benchmarks against exact oracles (no training); prints markdown tables.

1. Linear-Gaussian inverse problem (2-D ring prior, y = A x0 + sigma_y n): DPS and twisted SMC
   vs the exact posterior, MMD^2 vs NFE (= steps) and SMC population size.
2. Class-conditional mixture: CFG / CFG++ scale vs MMD^2 to p(x | y) and class purity.
3. Product of two Gaussian mixtures: Feynman-Kac SMC vs plain score summation.
4. SVDD: black-box reward vs candidates M.

Run: ``python benchmarks/guidance.py`` (1 thread, ~3 minutes on a laptop CPU).
"""

from __future__ import annotations

import sys
import time

import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture, MixtureOracle, mmd, mmd_noise_floor
from diffusekit_guidance.dps import DPS
from diffusekit_guidance.operators import MatrixOperator
from diffusekit_guidance.oracles import (ClassConditionalMixture, ClassConditionalOracle, linear_gaussian_posterior,
                                         product_of_mixtures)
from diffusekit_guidance.smc import SMC
from diffusekit_guidance.svdd import SVDD



def ddim(steps):
    return dk.create("sampler", "ddim-renoise", steps=steps)

torch.set_num_threads(1)
N = 1000


def gen(seed):
    return torch.Generator().manual_seed(seed)


def run(pipe, n, seed=0, **kw):
    t0 = time.perf_counter()
    x = pipe.sample(n, generator=gen(seed), **kw)
    return x, pipe.last_nfe, time.perf_counter() - t0


def _ms(vals):
    t = torch.tensor(vals, dtype=torch.float64)
    return f"{float(t.mean()):.4f} +- {float(t.std()) if len(vals) > 1 else 0.0:.4f}"


def inverse_problem(steps_list=(25, 50, 100, 200, 500), pops=(10, 100, 1000), seeds=(0, 1, 2)):
    proc = dk.create("process", "vp")
    prior = GaussianMixture.ring(4, 1.0, 0.3)
    A, y, sy = torch.tensor([[1.0, 0.5]]), torch.tensor([0.6]), 0.3
    post = linear_gaussian_posterior(prior, A, y, sy)
    ref = post.sample(N, gen(1))
    floor = mmd_noise_floor(lambda n, seed: post.sample(n, gen(100 + seed)), N, repeats=5)
    op = MatrixOperator(A)
    print("\n### Linear-Gaussian inverse problem (MMD^2 to the exact posterior, n = 1000, mean +- std over 3 seeds)\n")
    print(f"noise floor (two exact posterior draws): {floor:.4f}; unguided prior: "
          f"{mmd(prior.sample(N, gen(5)), ref):.4f}\n")
    print("| method | steps = NFE | population | MMD^2 | seconds |")
    print("|---|---|---|---|---|")
    rows = ([("dps (score, eq. 16)", s, None) for s in steps_list] + [("dps (step, zeta' 0.2)", s, None) for s in steps_list]
            + [("smc", s, p) for s in steps_list for p in pops])
    for method, steps, pop in rows:
        vals, secs = [], []
        for seed in seeds:
            if method.startswith("dps (score"):
                g = DPS(operator=op, measurement=y, noise=sy, mode="score")
            elif method.startswith("dps"):
                g = DPS(operator=op, measurement=y, scale=0.2)
            else:
                g = SMC(target="posterior", operator=op, measurement=y, noise=sy, group_size=pop, seed=seed)
            pipe = dk.Pipeline(process=proc, network=MixtureOracle(prior, proc), parameterization="x0",
                               sampler={"name": "euler-maruyama", "steps": steps}, guidance=g, sample_shape=(2,))
            x, nfe, sec = run(pipe, N, seed)
            vals.append(mmd(x, ref))
            secs.append(sec)
        print(f"| {method} | {nfe} | {pop or '-'} | {_ms(vals)} | {sum(secs) / len(secs):.2f} |")


def cfg_table():
    proc = dk.create("process", "vp")
    data = ClassConditionalMixture(GaussianMixture.ring(k=4, radius=1.0, std=0.45), [0, 1, 0, 1])
    labels = torch.zeros(N, dtype=torch.long)
    ref = data.sample(labels, gen(1))
    print("\n### CFG / CFG++ on a class-conditional mixture (DDIM 50 steps, n = 1000)\n")
    print(f"exact conditional purity {data.purity(ref, labels):.3f}\n")
    print("| guidance | scale | NFE | MMD^2 to p(x given y) | class purity |")
    print("|---|---|---|---|---|")
    for spec in ({"name": "cfg", "scale": 0.0}, {"name": "cfg", "scale": 1.0}, {"name": "cfg", "scale": 2.0},
                 {"name": "cfg", "scale": 4.0}, {"name": "cfg++", "equivalent_w": 1.0},
                 {"name": "cfg++", "scale": 0.1}, {"name": "cfg++", "scale": 0.2}, {"name": "cfg++", "scale": 0.4},
                 {"name": "cfg++", "scale": 0.8}, {"name": "smc", "target": "cfg", "scale": 2.0}):
        sampler = {"name": "euler-maruyama", "steps": 200} if spec["name"] == "smc" else ddim(50)
        pipe = dk.Pipeline(process=proc, network=ClassConditionalOracle(data, proc), parameterization="x0",
                           sampler=sampler, guidance=spec, conditioner={"name": "label", "num_classes": 2},
                           sample_shape=(2,))
        x, nfe, _ = run(pipe, N, cond=labels)
        scale = spec.get("scale", f"equivalent_w={spec.get('equivalent_w')}")
        name = spec["name"] + (" (target cfg, EM 200)" if spec["name"] == "smc" else "")
        print(f"| {name} | {scale} | {nfe} | {mmd(x, ref):.4f} | {data.purity(x, labels):.3f} |")


def product_table():
    proc = dk.create("process", "vp")
    p1 = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], 0.6, [0.3, 0.7])
    p2 = GaussianMixture([[1.0, -1.0], [1.0, 1.0]], 0.6)
    prod = product_of_mixtures(p1, p2)
    ref = prod.sample(N, gen(1))
    floor = mmd_noise_floor(lambda n, seed: prod.sample(n, gen(100 + seed)), N, repeats=5)
    print(f"\n### Product of experts p1 p2 (closed form), MMD^2 mean +- std over 3 seeds, n = 1000, "
          f"noise floor {floor:.4f}\n")
    print("| sampler | steps | NFE | score sum only | FK-SMC, 1 population of 1000 | FK-SMC, 10 populations of 100 |")
    print("|---|---|---|---|---|---|")
    for steps in (50, 100, 200, 500):
        out = []
        for thr, final, group in ((0.0, False, None), (0.5, True, None), (0.5, True, 100)):
            vals = []
            for seed in (0, 1, 2):
                g = SMC(expert=MixtureOracle(p2, proc), target="product", ess_threshold=thr, final_resample=final,
                        group_size=group, seed=seed)
                pipe = dk.Pipeline(process=proc, network=MixtureOracle(p1, proc), parameterization="x0",
                                   sampler={"name": "euler-maruyama", "steps": steps}, guidance=g, sample_shape=(2,))
                x, nfe, _ = run(pipe, N, seed)
                vals.append(mmd(x, ref))
            out.append(_ms(vals))
        print(f"| euler-maruyama | {steps} | {nfe} | {out[0]} | {out[1]} | {out[2]} |")


def svdd_table():
    proc = dk.create("process", "vp")
    gm = GaussianMixture.ring(8, 1.5, 0.1)

    def reward(x0):
        return (x0.numpy()[:, 0] > 0.5).astype("float64")

    print("\n### SVDD, non-differentiable reward 1[x > 0.5] on an 8-mode ring (EM 50 steps, 300 samples)\n")
    print("| candidates M | NFE (batch 300 M) | mean reward |")
    print("|---|---|---|")
    for m in (1, 2, 4, 8, 16):
        g = SVDD(reward=reward, particles=m)
        pipe = dk.Pipeline(process=proc, network=MixtureOracle(gm, proc), parameterization="x0",
                           sampler={"name": "euler-maruyama", "steps": 50}, guidance=g, sample_shape=(2,))
        x, nfe, _ = run(pipe, 300 * m)
        print(f"| {m} | {nfe} | {reward(g.representatives(x)).mean():.3f} |")


if __name__ == "__main__":
    parts = sys.argv[1:] or ["cfg", "product", "svdd", "inverse"]
    for part in parts:
        {"cfg": cfg_table, "product": product_table, "svdd": svdd_table, "inverse": inverse_problem}[part]()
