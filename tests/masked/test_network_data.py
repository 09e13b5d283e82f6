"""Transformer network (shapes, time conditioning, ONNX export), datasets, save / load."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit_masked.datasets import CHARS, MarkovChain, decode, encode, pydoc_text
from diffusekit_masked.oracle import all_sequences, entropy


def _net(**kw):
    torch.manual_seed(0)
    return dk.create("network", "transformer", vocab_size=5, seq_len=6, dim=32, depth=2, heads=4, **kw)


def test_transformer_is_bidirectional_and_time_optional():
    net = _net().eval()
    x, t, _ = net.example_inputs(3)
    assert x.dtype == torch.long and torch.any(x == 5)
    out = net(x, t)
    assert out.shape == (3, 6, 6)
    # bidirectional: changing the last token changes the first position's logits
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % 5
    assert not torch.allclose(net(x2, t)[:, 0], out[:, 0])
    assert torch.equal(net(x, t * 0.5), out) and net.time_conditioned is False
    tc = _net(time_conditioning=True).eval()
    assert tc.time_conditioned and not torch.allclose(tc(x, t), tc(x, t * 0.5))


@pytest.mark.slow  # the dynamo exporter takes ~20-40 s on a shared CPU
def test_transformer_exports_to_onnx_with_dynamic_batch(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    net = _net(time_conditioning=True).eval()
    x, t, _ = net.example_inputs(4)
    batch = torch.export.Dim("batch", min=1, max=1024)
    prog = torch.onnx.export(net, (x, t), dynamo=True, dynamic_shapes=({0: batch}, {0: batch}),
                             input_names=["x_t", "t"], output_names=["logits"])
    path = tmp_path / "masked.onnx"
    prog.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (4, 7):
        xb, tb, _ = net.example_inputs(b)
        got = sess.run(None, {"x_t": xb.numpy(), "t": tb.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(got), net(xb, tb).detach(), atol=1e-4, rtol=1e-4)


def test_markov_chain_likelihood_and_entropy_are_exact():
    chain = MarkovChain(vocab_size=3, seq_len=5, concentration=0.5, seed=1)
    joint = chain.joint()
    assert float(joint.sum()) == pytest.approx(1.0, abs=1e-12)
    assert chain.entropy() == pytest.approx(entropy(joint), abs=1e-10)
    x = chain.sample(40000, torch.Generator().manual_seed(0))
    # empirical cross-entropy of samples estimates the entropy
    lp = chain.log_prob(x)
    assert float(-lp.mean()) == pytest.approx(chain.entropy(), abs=4 * float(lp.std()) / 200)
    a = dk.create("dataset", "markov", n=100, vocab_size=3, seq_len=5, chain_seed=1)
    b = dk.create("dataset", "markov", n=100, vocab_size=3, seq_len=5, chain_seed=1, split="test")
    assert a.shape == (100, 5) and a.dtype == torch.long and not torch.equal(a, b)
    assert torch.all(all_sequences(3, 2) == torch.tensor([[i, j] for i in range(3) for j in range(3)]))


def test_pydoc_dataset_split_and_codec():
    train = dk.create("dataset", "pydoc", seq_len=32, split="train")
    test = dk.create("dataset", "pydoc", seq_len=32, split="test")
    text = pydoc_text()
    assert train.shape[1] == 32 and int(train.max()) < len(CHARS) == 96
    n_train_chars = int(len(text) * 0.9)
    assert test.shape[0] == (len(text) - n_train_chars) // 32
    assert decode(test[0]) == text[n_train_chars:n_train_chars + 32].encode("ascii", "replace").decode()
    assert decode(encode("def f(x):\n    return x")) == "def f(x):\n    return x"


def test_pipeline_trains_saves_and_loads(tmp_path):
    chain = MarkovChain(vocab_size=3, seq_len=4, seed=0)
    data = chain.sample(512, torch.Generator().manual_seed(0))
    net = dk.create("network", "transformer", vocab_size=3, seq_len=4, dim=16, depth=1, heads=2)
    pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 3, "schedule": "cosine"}, network=net,
                       sampler={"name": "ancestral", "steps": 10})
    res = dk.train(pipe, data, steps=5, batch_size=32, lr=1e-3, ema=None)
    assert len(res.losses) == 5 and all(math.isfinite(v) for v in res.losses)
    pipe.save(tmp_path / "run")
    loaded = dk.Pipeline.load(tmp_path / "run")
    assert loaded.config == pipe.config
    a = pipe.sample(3, generator=[0, 1, 2])
    b = loaded.sample(3, generator=[0, 1, 2])
    assert torch.equal(a, b) and a.shape == (3, 4)
