"""Retrieval-based sampling: ReDi's knowledge base (exact continuation for a stored key, NFE
saved = k_late - k_early, save/load) and retrieval-guided initialization."""
import pytest
import torch

import effdiff as ed
from effdiff.checkpoint import CheckpointError
from effdiff.data import GaussianMixture
from effdiff.retrieval import KnowledgeBase, redi_sample, retrieval_init

SIG = ed.timesteps.karras(20, 0.002, 80.0)
K_EARLY, K_LATE = 4, 12


def mixture():
    g = torch.Generator().manual_seed(0)
    return GaussianMixture(torch.ones(4), torch.randn(4, 2, generator=g, dtype=torch.float64) * 2, torch.full((4,), 0.3))


def kb_and_noise(n=16):
    gm = mixture()
    x = ed.sampling.randn((n, 2), seed=5, dtype=torch.float64) * float(SIG[0])
    return gm, x, KnowledgeBase.build(gm, n, SIG, K_EARLY, K_LATE, x=x)


def states(gm, x, sig=SIG, solver="ddim"):
    out = {}
    ed.sample(gm, x, sig, solver=solver, callback=lambda i: out.__setitem__(int(i["i"]) + 1, i["x"]))
    return out


def test_kb_stores_the_models_own_trajectory_states():
    gm, x, kb = kb_and_noise()
    traj = states(gm, x)
    assert len(kb) == 16 and kb.keys.shape == (16, 2)
    assert torch.allclose(kb.keys, traj[K_EARLY].reshape(16, -1), atol=1e-12)
    assert torch.allclose(kb.values, traj[K_LATE], atol=1e-12)


def test_redi_query_equal_to_key_continues_the_stored_trajectory_exactly():
    gm, x, kb = kb_and_noise()
    q = x[3:7]                                        # same noise as stored trajectories 3..6
    res = redi_sample(gm, kb, q, SIG)
    full = ed.sample(gm, q, SIG, solver="ddim", return_info=True)
    assert res.index[:, 0].tolist() == [3, 4, 5, 6]
    assert torch.allclose(res.weights, torch.ones(4, 1, dtype=torch.float64), atol=1e-14)
    assert res.distance.abs().max() < 1e-12
    assert (res.x - full.x).abs().max() < 1e-10       # the exact stored continuation
    assert res.nfe_saved == K_LATE - K_EARLY == 8
    assert res.nfe == full.nfe - res.nfe_saved == 12
    # top-H least squares also recovers the key itself (weights one-hot; H <= dim keeps it unique)
    res3 = redi_sample(gm, kb, q, SIG, k=2)
    assert torch.allclose(res3.weights[:, 0], torch.ones(4, dtype=torch.float64), atol=1e-8)
    assert (res3.x - full.x).abs().max() < 1e-6


def test_redi_new_query_takes_a_neighbour_and_saves_steps():
    gm, x, kb = kb_and_noise(64)
    q = ed.sampling.randn((8, 2), seed=99, dtype=torch.float64) * float(SIG[0])
    res = redi_sample(gm, kb, q, SIG, k=2)
    assert res.nfe == 20 - 8 and res.nfe_saved == 8
    assert res.index.shape == (8, 2) and torch.isfinite(res.x).all()
    # the retrieved state is the least-squares combination of the neighbours' values
    xk = states(gm, q)[K_EARLY]
    v, idx, w, _ = kb.retrieve(xk, 2)
    assert torch.allclose(v, torch.einsum("bk,bkd->bd", w, kb.values[idx]))


def test_redi_per_class_retrieval_only_returns_same_class():
    gm = mixture()
    labels = torch.arange(16) % 4

    def den(x, sigma, cond=None):
        return gm(x, sigma)
    x = ed.sampling.randn((16, 2), seed=1, dtype=torch.float64) * 80
    kb = KnowledgeBase.build(den, 16, SIG, K_EARLY, K_LATE, x=x, cond=labels)
    q = ed.sampling.randn((6, 2), seed=2, dtype=torch.float64) * 80
    qc = torch.tensor([0, 1, 2, 3, 0, 1])
    res = redi_sample(den, kb, q, SIG, cond=qc, per_class=True)
    assert (kb.labels[res.index[:, 0]] == qc).all()
    with pytest.raises(ValueError, match="class"):
        redi_sample(den, kb, q[:1], SIG, cond=torch.tensor([7]), per_class=True)


def test_kb_save_load_roundtrip(tmp_path):
    gm, x, kb = kb_and_noise()
    kb.save(tmp_path / "kb")
    kb2 = KnowledgeBase.load(tmp_path / "kb")
    assert torch.equal(kb2.keys, kb.keys) and torch.equal(kb2.values, kb.values)
    assert (kb2.k_early, kb2.k_late, kb2.solver) == (K_EARLY, K_LATE, "ddim")
    assert torch.equal(kb2.sigmas, SIG)
    (tmp_path / "kb.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        KnowledgeBase.load(tmp_path / "kb")


def test_bad_inputs():
    gm, x, kb = kb_and_noise()
    with pytest.raises(ValueError, match="k_early"):
        KnowledgeBase.build(gm, 4, SIG, 12, 4, shape=(2,))
    with pytest.raises(ValueError, match="shape"):
        KnowledgeBase.build(gm, 4, SIG, 4, 12)
    with pytest.raises(ValueError, match="schedule"):
        redi_sample(gm, kb, x[:2], ed.timesteps.karras(10, 0.002, 80.0))


def test_retrieval_init_from_stored_sample():
    gm = mixture()
    stored = gm.sample(32, generator=torch.Generator().manual_seed(0)).double()
    query = stored[[5, 9]] + 0.01
    sig = SIG
    sigma = float(sig[12])
    res = retrieval_init(gm, stored, query, sig, sigma, seed=0)
    assert res.index[:, 0].tolist() == [5, 9]
    assert res.nfe == 20 - 12 and res.nfe_saved == 12
    # it equals noising the stored sample to σ and running the tail by hand
    z = ed.sampling.randn(query.shape, seed=0, dtype=torch.float64)
    ref = ed.sample(gm, stored[[5, 9]] + sigma * z, sig[12:], solver="ddim")
    assert (res.x - ref).abs().max() < 1e-12
    # from a low σ the result stays close to the retrieved sample
    low = retrieval_init(gm, stored, query, sig, float(sig[17]), seed=0)
    assert (low.x - stored[[5, 9]]).abs().max() < 0.2
    with pytest.raises(ValueError, match="sigma"):
        retrieval_init(gm, stored, query, sig, 100.0)
