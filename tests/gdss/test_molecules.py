"""Molecules for GDSS: bond-order quantisation at 0.5 / 1.5 / 2.5, SMILES <-> state encoding
round trips through RDKit, validity without correction, uniqueness and novelty, the
procedural QM9-sized dataset and the molecule recipe's pipeline."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rdkit", reason="molecules need RDKit: pip install 'diffusekit[graph]'")

import diffusekit as dk
from rdkit import Chem

from diffusekit_gdss import molecules as M

SMILES = ["C#N", "c1ccccc1O", "O=C1CC1", "CC(=O)OC", "N#CC(F)(F)F", "C1CN1", "OCC#CC=CN"]


def _canon(s):
    return Chem.MolToSmiles(Chem.MolFromSmiles(s))


def test_bond_orders_are_cut_at_half_integers_symmetrised_with_zero_diagonal():
    vals = torch.tensor([0.49, 0.5, 1.49, 1.5, 2.49, 2.5, 3.7, -0.3])
    adj = torch.zeros(1, 9, 9)
    for k, v in enumerate(vals):
        adj[0, k, k + 1] = adj[0, k + 1, k] = v
    adj[0, 3, 3] = 2.0  # the diagonal is never a bond
    q = M.quantize_bonds(adj)
    assert [q[0, k, k + 1].item() for k in range(8)] == [0, 1, 1, 2, 2, 3, 3, 0]
    assert torch.equal(q, q.transpose(1, 2)) and q.diagonal(dim1=1, dim2=2).abs().sum() == 0
    lop = torch.zeros(1, 2, 2)
    lop[0, 0, 1] = 2.0  # one-sided: the mean 1.0 is a single bond
    assert M.quantize_bonds(lop)[0, 1, 0] == 1


def test_encode_decode_round_trip_with_noise_below_the_thresholds():
    state = M.encode(SMILES, max_atoms=9)
    assert state["x"].shape == (7, 9, 4) and state["adj"].shape == (7, 9, 9)
    assert set(state["adj"].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}  # kekulised bond orders
    g = torch.Generator().manual_seed(0)
    noisy = {"x": state["x"] * 0.8 + 0.1 * torch.rand(state["x"].shape, generator=g) * (state["x"].sum(-1, keepdim=True) > 0),
             "adj": state["adj"] + 0.45 * (2 * torch.rand(state["adj"].shape, generator=g) - 1)}
    for s in (state, noisy):
        mols = M.decode(s)
        assert [Chem.MolToSmiles(m) for m in mols] == [_canon(x) for x in SMILES]


def test_invalid_valence_is_invalid_without_correction_and_metrics_count_it():
    state = M.encode(["CC", "CC", "CCO", "C"], max_atoms=6)
    state["adj"][3, 0, 1:6] = state["adj"][3, 1:6, 0] = 1.0  # a carbon with five bonds ...
    state["x"][3, 1:6, 0] = 1.0  # ... to five carbons
    mols = M.decode(state)
    assert mols[3] is None and all(m is not None for m in mols[:3])
    m = M.molecule_metrics(state, train_smiles=["CC"])
    assert m.n == 4 and m.validity == pytest.approx(0.75)
    assert m.uniqueness == pytest.approx(2 / 3) and m.novelty == pytest.approx(0.5) and m.connected == 1.0
    two = M.encode(["C.O"], max_atoms=3)
    assert M.molecule_metrics(two).connected == 0.0
    empty = {"x": torch.zeros(1, 3, 4), "adj": torch.zeros(1, 3, 3)}
    assert M.decode(empty) == [None]


def test_encode_names_the_bad_molecule():
    with pytest.raises(ValueError, match="CCCCCCCCCC.*max_atoms=9"):
        M.encode(["CCCCCCCCCC"])
    with pytest.raises(ValueError, match="Cl"):
        M.encode(["CCl"])
    with pytest.raises(ValueError, match="does not parse"):
        M.encode(["C1CC"])


def test_procedural_molecules_are_valid_stable_distinct_and_seeded():
    a = M.procedural_molecules(3, 300)
    assert a == M.procedural_molecules(3, 300) and a != M.procedural_molecules(4, 300)
    assert len(set(a)) == 300
    orders = set()
    for s in a:
        mol = Chem.MolFromSmiles(s)
        assert mol is not None and 3 <= mol.GetNumAtoms() <= 9 and s == Chem.MolToSmiles(mol)
        Chem.Kekulize(mol, clearAromaticFlags=True)
        for b in mol.GetBonds():
            pair = {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()}
            assert pair not in ({"O"}, {"O", "F"}, {"N", "F"}, {"F"}), s
            orders.add(b.GetBondTypeAsDouble())
    assert orders == {1.0, 2.0, 3.0}
    assert M.molecule_metrics(M.encode(a)).validity == 1.0


def test_dataset_splits_and_recipe_pipeline_samples_decodable_states():
    ex = dk.create("dataset", {"name": "molecules", "split": "test", "count": 200})
    train = M.molecule_split(0, 200, 9, "train")
    test = M.molecule_split(0, 200, 9, "test")
    assert len(test) == 20 and len(train) == 180 and not set(train) & set(test)
    assert ex.x["x"].shape == (20, 9, 4) and torch.equal(ex.cond.sum(1), ex.x["x"].sum((1, 2)))
    cfg = dk.create("recipe", "gdss-molecules")
    assert cfg["process"]["preset"] == "qm9" and cfg["train"]["lr_decay"] == "cosine"
    cfg["network"].update({"nhid": 8, "adim": 8, "c_hid": 4, "c_final": 2, "layers": 2})
    cfg["sampler"] = {"name": "s4", "steps": 10}
    cfg.pop("train")
    data = cfg.pop("data")
    data["count"] = 100
    pipe = dk.Pipeline.from_config(cfg)
    dk.train(pipe, data, steps=5, batch_size=8, progress=False)
    out = pipe.sample(6, generator=list(range(6)))
    m = M.molecule_metrics(out)
    assert m.n == 6 and 0.0 <= m.validity <= 1.0
