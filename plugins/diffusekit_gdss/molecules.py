"""Molecular graphs for GDSS: categorical atom features, bond orders in the adjacency, the
bond-order quantisation of the final sample, and the validity / uniqueness / novelty metrics.

Encoding (the GDSS convention for QM9-sized molecules): a molecule of at most ``max_atoms``
heavy atoms is a state ``{"x": (B, N, K), "adj": (B, N, N)}`` with ``x`` the one-hot atom
type over ``ATOMS`` (padded rows all zero: their node flag is 0) and ``adj`` the kekulised
bond order, 0 (none), 1, 2 or 3, symmetric with a zero diagonal. Hydrogens are implicit.

Decoding a sampled state: the adjacency is symmetrised and cut at the thresholds 0.5 / 1.5 /
2.5 into bond orders 0..3 (:func:`quantize_bonds`); a node is an atom when its largest
feature is >= 0.5, and the atom type is that feature's index (a row below 0.5 everywhere is a
padded node). Validity is RDKit sanitisation of the decoded molecule as it is, with no
valency correction (the "validity w/o correction" of the GDSS paper); uniqueness is the
fraction of distinct canonical SMILES among the valid ones, novelty the fraction of those not
in the training set.

Dataset ``molecules``: QM9 (134k molecules of up to 9 heavy atoms C, N, O, F) cannot be
downloaded here, so :func:`procedural_molecules` draws QM9-sized molecules at run time from a
seed: a random spanning tree over 3..9 atoms drawn with QM9-like frequencies (C 0.70, O 0.16,
N 0.12, F 0.02) that respects each atom's valence, ring closures between atoms two or more
bonds apart, and bond-order upgrades where both atoms have free valence (triple bonds only
between C and N), no O-O, O-F, N-F or F-F bond (unstable groups that GDB-style
enumerations leave out), each molecule kept only if RDKit sanitises it and its canonical SMILES is
new. It is chemistry-valid by construction but it is not QM9: figures on it are not
comparable with the papers' QM9 tables.

RDKit is an optional dependency (``pip install 'diffusekit[graph]'``); the quantisation and
encoding of tensors do not need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Optional, Sequence

import numpy as np
import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.state import Example

#: heavy atoms of the QM9 alphabet, in feature order
ATOMS = ("C", "N", "O", "F")
#: usual valence of each atom (neutral, no charge)
VALENCE = {"C": 4, "N": 3, "O": 2, "F": 1}
#: cut points between bond orders 0 | 1 | 2 | 3
BOND_THRESHOLDS = (0.5, 1.5, 2.5)


def _chem():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:  # pragma: no cover - the graph extra is missing
        from diffusekit.errors import ConfigError

        raise ConfigError("molecule decoding and metrics need RDKit: pip install 'diffusekit[graph]'",
                          loc="molecules") from None
    RDLogger.DisableLog("rdApp.*")
    return Chem


def quantize_bonds(adj: torch.Tensor, thresholds: Sequence[float] = BOND_THRESHOLDS) -> torch.Tensor:
    """Bond orders 0..len(thresholds) of a (B, N, N) sampled adjacency: the symmetrised value
    is cut at ``thresholds`` (0.5 / 1.5 / 2.5); zero diagonal."""
    a = (adj + adj.transpose(-1, -2)) / 2
    cuts = torch.as_tensor(list(thresholds), dtype=a.dtype, device=a.device)
    q = torch.bucketize(a.contiguous(), cuts, right=True).to(adj.dtype)
    n = q.shape[-1]
    return q * (1 - torch.eye(n, dtype=q.dtype, device=q.device))


def atom_types(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B, N) atom index per node of sampled features ``x`` (B, N, K): the argmax where the
    largest feature is >= ``threshold``, else -1 (a padded node)."""
    val, idx = x.max(-1)
    return torch.where(val >= threshold, idx, torch.full_like(idx, -1))


def encode(smiles: Iterable[str], max_atoms: int = 9, atoms: Sequence[str] = ATOMS) -> dict[str, torch.Tensor]:
    """A GDSS state of molecules given as SMILES: one-hot atoms (padded rows zero) and kekulised
    bond orders. Raises ``ValueError`` naming the molecule for an unparsable SMILES, an atom
    outside ``atoms`` or more than ``max_atoms`` heavy atoms."""
    Chem = _chem()
    smiles = list(smiles)
    x = torch.zeros(len(smiles), max_atoms, len(atoms))
    adj = torch.zeros(len(smiles), max_atoms, max_atoms)
    index = {a: i for i, a in enumerate(atoms)}
    for b, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise ValueError(f"molecules: SMILES {s!r} (number {b}) does not parse")
        Chem.Kekulize(mol, clearAromaticFlags=True)
        if mol.GetNumAtoms() > max_atoms:
            raise ValueError(f"molecules: {s!r} has {mol.GetNumAtoms()} heavy atoms, more than max_atoms={max_atoms}")
        for atom in mol.GetAtoms():
            sym = atom.GetSymbol()
            if sym not in index or atom.GetFormalCharge() != 0:
                raise ValueError(f"molecules: {s!r} has atom {sym}{atom.GetFormalCharge():+d}; "
                                 f"only neutral {', '.join(atoms)} are encoded")
            x[b, atom.GetIdx(), index[sym]] = 1.0
        for bond in mol.GetBonds():
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            adj[b, i, j] = adj[b, j, i] = float(bond.GetBondTypeAsDouble())
    return {"x": x, "adj": adj}


def decode(state: dict, atoms: Sequence[str] = ATOMS) -> list:
    """One RDKit molecule per sample of a sampled state, or ``None`` where it is not valid
    (sanitisation fails: a valence is exceeded, or no atom). No valency correction."""
    Chem = _chem()
    bond_type = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    types = atom_types(state["x"].detach().cpu().float())
    orders = quantize_bonds(state["adj"].detach().cpu().float()).long()
    mols = []
    for b in range(types.shape[0]):
        idx = torch.nonzero(types[b] >= 0).flatten().tolist()
        if not idx:
            mols.append(None)
            continue
        mol = Chem.RWMol()
        for i in idx:
            a = Chem.Atom(atoms[int(types[b, i])])
            a.SetNoImplicit(False)
            mol.AddAtom(a)
        sub = orders[b][idx][:, idx]
        for i, j in torch.nonzero(torch.triu(sub, 1)).tolist():
            mol.AddBond(i, j, bond_type[int(sub[i, j])])
        try:
            Chem.SanitizeMol(mol)
        except Exception:  # RDKit raises its own valence / kekulisation errors
            mols.append(None)
            continue
        mols.append(mol.GetMol())
    return mols


def canonical(mol) -> str:
    """Canonical SMILES of a molecule."""
    return _chem().MolToSmiles(mol)


@dataclass
class MoleculeMetrics:
    """Validity (no correction), uniqueness among the valid, novelty of the unique ones against
    the training set; ``connected``: fraction of valid molecules in one piece."""

    n: int
    validity: float
    uniqueness: float
    novelty: float
    connected: float


def molecule_metrics(state: dict, train_smiles: Optional[Iterable[str]] = None, atoms: Sequence[str] = ATOMS) -> MoleculeMetrics:
    """:class:`MoleculeMetrics` of a sampled state; ``train_smiles`` (any SMILES, canonicalised
    here) gives novelty (NaN without it)."""
    Chem = _chem()
    mols = decode(state, atoms)
    valid = [m for m in mols if m is not None]
    smiles = [canonical(m) for m in valid]
    unique = set(smiles)
    novelty = float("nan")
    if train_smiles is not None:
        train = {canonical(m) for m in (Chem.MolFromSmiles(s) for s in train_smiles) if m is not None}
        novelty = len(unique - train) / len(unique) if unique else 0.0
    return MoleculeMetrics(
        n=len(mols),
        validity=len(valid) / len(mols) if mols else 0.0,
        uniqueness=len(unique) / len(valid) if valid else 0.0,
        novelty=novelty,
        connected=sum("." not in s for s in smiles) / len(smiles) if smiles else 0.0,
    )


# ----------------------------------------------------------------------------- dataset
_ATOM_P = {"C": 0.70, "N": 0.12, "O": 0.16, "F": 0.02}


def _random_molecule(rng: np.random.Generator, max_atoms: int, ring_p: float, upgrade_p: float):
    """(symbols, {(i, j): order}) of one random valence-respecting molecular graph."""
    k = max_atoms if rng.random() < 0.6 else int(rng.integers(3, max_atoms + 1))
    names, p = list(_ATOM_P), np.array(list(_ATOM_P.values()))
    syms, bonds, free = [], {}, []
    for _ in range(k):
        sym = names[int(rng.choice(len(names), p=p / p.sum()))]
        if syms:
            hosts = [i for i, f in enumerate(free) if f >= 1]
            if not hosts:
                break
            host = hosts[int(rng.integers(len(hosts)))]
            bonds[(host, len(syms))] = 1
            free[host] -= 1
            syms.append(sym)
            free.append(VALENCE[sym] - 1)
        else:
            syms.append(sym)
            free.append(VALENCE[sym])
    nbrs = {i: set() for i in range(len(syms))}
    for i, j in bonds:
        nbrs[i].add(j)
        nbrs[j].add(i)
    for _ in range(2):  # ring closures between atoms at least two bonds apart
        if rng.random() >= ring_p:
            continue
        cand = [(i, j) for i in range(len(syms)) for j in range(i + 1, len(syms))
                if free[i] >= 1 and free[j] >= 1 and j not in nbrs[i] and not (nbrs[i] & nbrs[j] and len(syms) < 4)]
        if cand:
            i, j = cand[int(rng.integers(len(cand)))]
            bonds[(i, j)] = 1
            free[i] -= 1
            free[j] -= 1
            nbrs[i].add(j)
            nbrs[j].add(i)
    for _ in range(2):
        for (i, j) in list(bonds):
            if rng.random() < upgrade_p and free[i] >= 1 and free[j] >= 1:
                if bonds[(i, j)] == 2 and not {syms[i], syms[j]} <= {"C", "N"}:
                    continue
                bonds[(i, j)] += 1
                free[i] -= 1
                free[j] -= 1
    return syms, bonds


#: bonds GDB-style enumerations leave out as unstable (peroxides, hypofluorites, N-F, F-F)
_UNSTABLE = {frozenset("O"), frozenset("OF"), frozenset("NF"), frozenset("F")}


def procedural_molecules(seed: int = 0, count: int = 2000, max_atoms: int = 9, ring_p: float = 0.5,
                         upgrade_p: float = 0.25) -> list[str]:
    """``count`` distinct canonical SMILES of random valid molecules of at most ``max_atoms``
    heavy atoms from ``ATOMS`` (see the module docstring), the same list for the same seed."""
    Chem = _chem()
    bond_type = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    for _ in range(count * 50):
        syms, bonds = _random_molecule(rng, max_atoms, ring_p, upgrade_p)
        if any(frozenset((syms[i], syms[j])) in _UNSTABLE for i, j in bonds):
            continue
        mol = Chem.RWMol()
        for s in syms:
            mol.AddAtom(Chem.Atom(s))
        for (i, j), order in bonds.items():
            mol.AddBond(i, j, bond_type[order])
        try:
            Chem.SanitizeMol(mol)
        except Exception:
            continue
        smi = Chem.MolToSmiles(mol)
        if smi not in seen:
            seen.add(smi)
            out.append(smi)
            if len(out) == count:
                return out
    raise RuntimeError(f"procedural_molecules: only {len(out)} distinct molecules of {count} asked for")


class MoleculeDataConfig(ComponentConfig):
    split: Literal["train", "test"] = "train"
    seed: int = Field(0, description="generation and split seed")
    count: int = Field(2000, ge=10, description="molecules generated (both splits)")
    max_atoms: int = Field(9, ge=2, le=64, description="padding size N = most heavy atoms (QM9: 9)")
    test_fraction: float = Field(0.1, gt=0, lt=1)
    n: Optional[int] = Field(None, ge=1, description="keep the first n molecules of the split (None: all)")


def molecule_split(seed: int = 0, count: int = 2000, max_atoms: int = 9, split: str = "train",
                   test_fraction: float = 0.1) -> list[str]:
    """The SMILES of one split of :func:`procedural_molecules` (shuffled by ``seed``, the first
    ``test_fraction`` is the test split)."""
    smiles = procedural_molecules(seed, count, max_atoms)
    perm = np.random.default_rng(seed + 1234).permutation(len(smiles))
    n_test = int(np.ceil(len(smiles) * test_fraction))
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return [smiles[i] for i in idx]


def molecules_dataset(split="train", seed=0, count=2000, max_atoms=9, test_fraction=0.1, n=None) -> Example:
    """Procedural QM9-sized molecules as GDSS tensors: one-hot atoms and bond orders, node
    flags as the condition."""
    smiles = molecule_split(seed, count, max_atoms, split, test_fraction)
    if n is not None:
        smiles = smiles[:n]
    state = encode(smiles, max_atoms)
    return Example(state, (state["x"].sum(-1) > 0).float())
