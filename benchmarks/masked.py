"""Masked discrete diffusion benchmarks; each subcommand prints a Markdown table.

    python benchmarks/masked.py speed          # first-hitting vs 1000-step ancestral at L = 64
    python benchmarks/masked.py factorisation  # toy joint (L = 3, V = 3): sampler error vs steps
    python benchmarks/masked.py precision      # float32 vs float64 categorical sampling
    python benchmarks/masked.py markov         # train on a Markov-chain language, KL to truth
    python benchmarks/masked.py pydoc          # train on pydoc text, test bits/char + samples

Single-threaded CPU (``torch.set_num_threads(1)``); seeds are fixed.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import diffusekit as dk
from diffusekit_masked.categorical import unreachable_threshold
from diffusekit_masked.datasets import VOCAB_SIZE_PYDOC, MarkovChain, decode
from diffusekit_masked.oracle import JointOracle, all_sequences, entropy, sequence_index
from diffusekit_masked.process import bits_per_token


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p || q) in nats over a table (cells with p = 0 skipped)."""
    p, q = p.double().flatten(), q.double().flatten()
    nz = p > 0
    return float((p[nz] * (p[nz] / q[nz]).log()).sum())


def _empirical(x: torch.Tensor, vocab: int) -> torch.Tensor:
    c = torch.bincount(sequence_index(x, vocab), minlength=vocab ** x.shape[1]).double()
    return c / c.sum()


def _timed(pipe, n, sampler, seed=0, repeats=3):
    best = math.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        pipe.sample(n, sampler=sampler, generator=torch.Generator().manual_seed(seed + r))
        best = min(best, time.perf_counter() - t0)
    return best, pipe.last_nfe


# ----------------------------------------------------------------------------- speed
def speed(args):
    length = 64
    rows = []
    for vocab, batches in ((VOCAB_SIZE_PYDOC, args.batches), (50257, [1])):
        torch.manual_seed(0)
        net = dk.create("network", "transformer", vocab_size=vocab, seq_len=length, dim=args.dim,
                        depth=args.depth, heads=4)
        pipe = dk.Pipeline(process={"name": "masked", "vocab_size": vocab}, network=net)
        specs = [{"name": "first-hitting"}, {"name": "ancestral", "steps": 1000, "cache": True}]
        if vocab == VOCAB_SIZE_PYDOC:
            specs += [{"name": "ancestral", "steps": 1000, "cache": False},
                      {"name": "ancestral", "steps": 64, "cache": True}]
        for batch in batches:
            for spec in specs:
                sec, nfe = _timed(pipe, batch, dict(spec), repeats=1 if spec.get("steps") == 1000 else 3)
                rows.append((vocab, batch, spec, sec, nfe))
                print(rows[-1], flush=True)
    fhs = {(v, b): s for v, b, spec, s, _ in rows if spec == {"name": "first-hitting"}}
    print(f"\nL = {length}, untrained transformer dim {args.dim} depth {args.depth}, float64 sampling, "
          f"1 CPU thread (shared machine)\n")
    print("| vocab | batch | sampler | NFE | seconds | first-hitting speed-up |")
    print("|---|---|---|---|---|---|")
    for v, b, spec, sec, nfe in rows:
        name = ", ".join(f"{k}={val}" for k, val in spec.items() if k != "name")
        label = spec["name"] + (f" ({name})" if name else "")
        print(f"| {v} | {b} | {label} | {nfe} | {sec:.3f} | {sec / fhs[(v, b)]:.1f}x |")


# ----------------------------------------------------------------------------- factorisation
def factorisation(args):
    g = torch.Generator().manual_seed(3)
    p = torch.rand(27, generator=g, dtype=torch.float64) + 0.2
    joint = (p / p.sum()).view(3, 3, 3)
    oracle = JointOracle(joint)
    n = args.n
    pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=oracle)
    ref = all_sequences(3, 3)[torch.multinomial(joint.flatten(), n, replacement=True,
                                                generator=torch.Generator().manual_seed(9))]
    floor = _kl(_empirical(ref, 3), joint)
    print(f"toy joint L = 3, V = 3, exact conditionals as the network; {n} samples per row; "
          f"KL(empirical || joint) of {n} exact samples (noise floor) = {floor:.4f}\n")
    print("| sampler | steps | NFE | KL(samples || joint) | total variation |")
    print("|---|---|---|---|---|")
    specs = [{"name": "ancestral", "steps": s} for s in (1, 2, 3, 4, 8, 16, 64, 256)]
    specs += [{"name": "first-hitting"}] + [{"name": "confidence", "steps": s} for s in (1, 2, 3)]
    for spec in specs:
        x = pipe.sample(n, sampler=dict(spec), generator=torch.Generator().manual_seed(1))
        emp = _empirical(x, 3)
        tv = 0.5 * float((emp - joint.flatten()).abs().sum())
        print(f"| {spec['name']} | {spec.get('steps', '-')} | {pipe.last_nfe} | {_kl(emp, joint):.4f} | {tv:.4f} |")


# ----------------------------------------------------------------------------- precision
def precision(args):
    """A Zipf-like conditional inside one ancestral step of an N-step sampler."""
    vocab = 50257
    k = torch.arange(1, vocab + 1, dtype=torch.float64)
    p = k ** -1.1
    p = p / p.sum()
    h = float(-(p * p.log()).sum())
    print(f"Zipf-like conditional p_k ~ k^-1.1 over V = {vocab}: entropy {h:.3f} nats\n")
    print("| ancestral steps | t | precision | threshold p_i/p_max | unreachable tokens | unreachable mass | "
          "entropy of reachable tokens (nats) |")
    print("|---|---|---|---|---|---|---|")
    for steps in (100, 1000, 10000):
        t, s = 0.5, 0.5 - 1 / steps
        unmask = (t - s) / t      # linear schedule: (alpha_s - alpha_t) / (1 - alpha_t)
        for prec in ("float32", "float64"):
            thr = unreachable_threshold(prec)
            ok = unmask * p / (1 - unmask) >= thr   # p_max is the stay-masked probability
            q = p[ok] / p[ok].sum()
            hq = float(-(q * q.log()).sum())
            print(f"| {steps} | {t} | {prec} | {thr:.3g} | {int((~ok).sum())} | {float(p[~ok].sum()):.4f} | {hq:.3f} |")


# ----------------------------------------------------------------------------- training
def _train(pipe, data, steps, batch, lr, log_every=200):
    """AdamW with warm-up; EMA only for long runs (an EMA of 0.999 over a few hundred steps
    still carries the random initial weights)."""
    t0 = time.perf_counter()
    ema = 0.999 if steps >= 5000 else None
    res = dk.train(pipe, data, steps=steps, batch_size=batch, lr=lr, warmup=100, ema=ema, log_every=log_every)
    return res, time.perf_counter() - t0


def markov(args):
    chain = MarkovChain(args.vocab, args.length, concentration=0.5, seed=0)
    data = chain.sample(50_000, torch.Generator().manual_seed(0))
    test = chain.sample(2000, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    net = dk.create("network", "transformer", vocab_size=args.vocab, seq_len=args.length, dim=64, depth=2, heads=4)
    pipe = dk.Pipeline(process={"name": "masked", "vocab_size": args.vocab}, network=net)
    res, sec = _train(pipe, data, args.steps, 256, 2e-3)
    joint = chain.joint()
    h = chain.entropy()
    nelbo = float(-pipe.log_likelihood(test, num_samples=32, generator=torch.Generator().manual_seed(2)).mean())
    n = args.n
    ref = chain.sample(n, torch.Generator().manual_seed(3))
    floor = _kl(_empirical(ref, args.vocab), joint)
    print(f"Markov chain V = {args.vocab}, L = {args.length} (Dirichlet 0.5 rows): entropy {h:.4f} nats "
          f"({h / (args.length * math.log(2)):.4f} bits/token); trained {args.steps} steps in {sec:.0f} s, "
          f"final loss {res.final_loss:.4f} nats/token\n")
    print(f"test NELBO {nelbo:.4f} nats = {nelbo / (args.length * math.log(2)):.4f} bits/token "
          f"(NELBO - H = {nelbo - h:.4f} nats >= KL(data || model))\n")
    print(f"| sampler | NFE | KL(empirical of {n} samples || true) | noise floor (exact samples) | "
          "transition KL (bits) |")
    print("|---|---|---|---|---|")
    true_t = chain.transition
    if args.out:
        pipe.save(args.out)
    # every network call sees all n samples (n * L tokens): keep the step counts small on a CPU
    for spec in ({"name": "first-hitting"}, {"name": "ancestral", "steps": args.length},
                 {"name": "confidence", "steps": args.length}):
        x = pipe.sample(n, sampler=dict(spec), generator=torch.Generator().manual_seed(4))
        pairs = torch.bincount(x[:, :-1].flatten() * args.vocab + x[:, 1:].flatten(),
                               minlength=args.vocab ** 2).double().view(args.vocab, args.vocab)
        est_t = (pairs + 1e-9) / (pairs + 1e-9).sum(1, keepdim=True)
        w = pairs.sum(1) / pairs.sum()
        tkl = float((w * (true_t * (true_t / est_t).log()).sum(1)).sum()) / math.log(2)
        name = spec["name"] + (f" {spec['steps']} steps" if "steps" in spec else "")
        print(f"| {name} | {pipe.last_nfe} | {_kl(_empirical(x, args.vocab), joint):.4f} | {floor:.4f} | {tkl:.5f} |")


def pydoc(args):
    train = dk.create("dataset", "pydoc", seq_len=args.length, split="train")
    test = dk.create("dataset", "pydoc", seq_len=args.length, split="test")
    torch.manual_seed(0)
    if args.init:  # continue training a saved pipeline (fresh optimizer)
        pipe = dk.Pipeline.load(args.init)
        net = pipe.network
    else:
        net = dk.create("network", "transformer", vocab_size=VOCAB_SIZE_PYDOC, seq_len=args.length, dim=args.dim,
                        depth=args.depth, heads=4)
        pipe = dk.Pipeline(process={"name": "masked", "vocab_size": VOCAB_SIZE_PYDOC, "schedule": "log-linear"},
                           network=net)
    res, sec = _train(pipe, train, args.steps, args.batch, args.lr)
    if args.out:
        pipe.save(args.out)
    ll = pipe.log_likelihood(test[: args.n_test], num_samples=16, generator=torch.Generator().manual_seed(0))
    bpc = float(bits_per_token(ll, args.length).mean())
    unigram = torch.bincount(train.flatten(), minlength=VOCAB_SIZE_PYDOC).double() + 1
    unigram = unigram / unigram.sum()
    uni_bpc = float(-unigram.log2()[test.flatten()].mean())
    params = sum(p.numel() for p in net.parameters())
    print(f"pydoc_data.topics, {train.shape[0]} train / {test.shape[0]} test chunks of {args.length} chars; "
          f"transformer dim {args.dim} depth {args.depth} ({params / 1e6:.2f} M params); {args.steps} steps, "
          f"batch {args.batch}, {sec:.0f} s on 1 CPU thread; final train loss {res.final_loss:.3f} nats/char\n")
    print("| model | test bits per character |")
    print("|---|---|")
    print(f"| unigram (train frequencies) | {uni_bpc:.3f} |")
    print(f"| masked diffusion NELBO bound ({args.n_test} test chunks, 16 t-samples) | {bpc:.3f} |\n")
    for spec in ({"name": "first-hitting"}, {"name": "ancestral", "steps": 256}):
        x = pipe.sample(3, sampler=dict(spec), generator=[torch.Generator().manual_seed(s) for s in range(3)])
        print(f"samples ({spec['name']}, NFE {pipe.last_nfe}):\n")
        for row in x:
            print("    " + repr(decode(row)))
        print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "factorisation", "precision", "markov", "pydoc"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--vocab", type=int, default=3)
    ap.add_argument("--length", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--out", default=None, help="markov / pydoc: save the trained pipeline here")
    ap.add_argument("--init", default=None, help="pydoc: continue training the pipeline saved here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    {"speed": speed, "factorisation": factorisation, "precision": precision, "markov": markov,
     "pydoc": pydoc}[args.what](args)


if __name__ == "__main__":
    main()
