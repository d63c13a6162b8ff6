"""Ring attention (distributed/ring.py): the online-softmax merge is exact against full softmax
attention for any split of the keys (also blocks whose scores are hugely negative or -inf); on 2
gloo ranks (one spawn for the file) the ring-parallel digits-dit sample equals the single-rank
sample, a 3-head attention (which Ulysses refuses on 2 ranks) is exact, and the byte counter
counts one K/V block per ring step."""
import random

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import effdiff as ed
from effdiff import distributed as D
from effdiff.distributed.comm import Exchange
from effdiff.distributed.patch_layers import Runtime, UlyssesAttention
from effdiff.distributed.ring import RingAttention, block_attention, merge, ring_attention
from effdiff.models.layers import SelfAttention

EXACT = 1e-5
STEPS = 8


def _full(q, k, v):
    """Reference: softmax attention in float64."""
    s = (q.double() @ k.double().transpose(-2, -1)) / q.shape[-1] ** 0.5
    return torch.softmax(s, -1) @ v.double()


def _blockwise(q, k, v, sizes):
    acc = None
    for kb, vb in zip(k.split(sizes, dim=-2), v.split(sizes, dim=-2)):
        acc = merge(acc, block_attention(q, kb, vb))
    return acc


def _split(m, rng):
    """A random composition of m into block sizes (blocks of 1 included)."""
    cuts = sorted(rng.sample(range(1, m), rng.randint(0, m - 1)))
    return [b - a for a, b in zip([0] + cuts, cuts + [m])]


def test_online_softmax_merge_is_exact_for_any_split():
    g = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    q = torch.randn(2, 3, 5, 8, generator=g) * 2
    k, v = torch.randn(2, 3, 37, 8, generator=g) * 2, torch.randn(2, 3, 37, 8, generator=g)
    ref = _full(q, k, v)
    lse_ref = torch.logsumexp((q.double() @ k.double().transpose(-2, -1)) / 8 ** 0.5, -1)
    splits = [[37], [1] * 37, [36, 1], [1, 36]] + [_split(37, rng) for _ in range(30)]
    for sizes in splits:
        out, lse = _blockwise(q, k, v, sizes)
        assert float((out.double() - ref).abs().max()) < 2e-6, sizes
        assert float((lse.double() - lse_ref).abs().max()) < 2e-5, sizes
        out64, _ = _blockwise(q.double(), k.double(), v.double(), sizes)
        assert float((out64 - ref).abs().max()) < 1e-12, sizes       # the merge itself loses nothing
    # one block is the whole sequence: torch's own attention
    out, _ = block_attention(q, k, v)
    assert float((out - F.scaled_dot_product_attention(q, k, v)).abs().max()) < 1e-6


@pytest.mark.parametrize("where", [0, 2, 4])
def test_a_block_of_huge_negative_scores_contributes_nothing(where):
    g = torch.Generator().manual_seed(1)
    q = torch.rand(1, 2, 4, 8, generator=g) + 0.1                    # positive queries
    ks = [torch.randn(1, 2, 6, 8, generator=g) for _ in range(5)]
    vs = [torch.randn(1, 2, 6, 8, generator=g) for _ in range(5)]
    ks[where] = -1e4 * (torch.rand(1, 2, 6, 8, generator=g) + 0.1)  # scores ~ -1e4: softmax weight exp(-1e4) = 0
    vs[where] = vs[where] * 1e3                                      # would show if it leaked in
    k, v = torch.cat(ks, -2), torch.cat(vs, -2)
    out, lse = _blockwise(q, k, v, [6] * 5)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    assert float((out.double() - _full(q, k, v)).abs().max()) < 2e-6
    rest = [i for i in range(5) if i != where]
    assert float((out.double() - _full(q, torch.cat([ks[i] for i in rest], -2),
                                     torch.cat([vs[i] for i in rest], -2))).abs().max()) < 2e-6


def test_an_all_minus_inf_block_is_ignored_without_nan():
    g = torch.Generator().manual_seed(2)
    q = torch.ones(1, 1, 3, 4)
    k_inf = torch.full((1, 1, 5, 4), -3e38)                          # q.k overflows to -inf in float32
    out_inf, lse_inf = block_attention(q, k_inf, torch.randn(1, 1, 5, 4, generator=g))
    assert torch.isneginf(lse_inf).all() and torch.equal(out_inf, torch.zeros_like(out_inf))
    k, v = torch.randn(1, 1, 7, 4, generator=g), torch.randn(1, 1, 7, 4, generator=g)
    part = block_attention(q, k, v)
    for merged in (merge((out_inf, lse_inf), part), merge(part, (out_inf, lse_inf))):
        assert torch.equal(merged[0], part[0]) and torch.equal(merged[1], part[1])
    both = merge((out_inf, lse_inf), (out_inf, lse_inf))             # nothing attended at all: 0, not NaN
    assert torch.equal(both[0], torch.zeros_like(out_inf)) and torch.isneginf(both[1]).all()


def test_blockwise_attention_is_differentiable():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda q, k, v: _blockwise(q, k.repeat(1, 1, 2, 1), v.repeat(1, 1, 2, 1),
                                                               [2, 1, 3]), (q, k, v))


def test_one_rank_ring_attention_is_self_attention():
    torch.manual_seed(0)
    attn = SelfAttention(24, 3)
    x = torch.randn(2, 10, 24)
    ring = RingAttention(attn, Runtime(D.Comm(), Exchange(D.Comm())))
    with torch.no_grad():
        assert float((ring(x) - attn(x)).abs().max()) < 1e-6


def _layer_case(heads, comm, layer=RingAttention, tokens=16):
    """Attention on a [2, tokens, 24] sequence split into token slabs; returns (max deviation from the
    full layer, bytes this rank sent)."""
    torch.manual_seed(5)                                             # same weights and input on every rank
    attn, x = SelfAttention(24, heads), torch.randn(2, tokens, 24)
    n = tokens // comm.size
    before = comm.bytes_sent
    part = layer(attn, Runtime(comm, Exchange(comm)))(x[:, comm.rank * n:(comm.rank + 1) * n])
    with torch.no_grad():
        dev = float((part - attn(x)[:, comm.rank * n:(comm.rank + 1) * n]).abs().max())
    return dev, comm.bytes_sent - before


def _ranks_work():
    """3 ranks: the ring over all three (two hops), the samples and 2-rank cases on the subgroup {0, 1}."""
    pair = dist.new_group([0, 1])                                    # every rank takes part in creating it
    res = {"three": _layer_case(3, D.Comm(), tokens=18)}
    if dist.get_rank() < 2:
        res.update(_pair_work(pair))
    return res


def _pair_work(group):
    den = ed.zoo.load("digits-dit")
    sig = ed.timesteps.uniform_t(STEPS, den.process)
    x = ed.sampling.randn((4, 1, 8, 8), seed=3) * sig[0].float()
    y = torch.arange(4)
    ref = ed.sample(ed.guided(den, 2.0), x, sig, "ddim", cond=y)
    comm = D.Comm(group)
    got = ed.sample(D.parallel(den, "ring", 2.0, comm), x, sig, "ddim", cond=y, return_info=True)
    res = {"ring": {"dev": float((got.x - ref).abs().max()), "out": got.x, "bytes": comm.bytes_sent, "nfe": got.nfe}}
    unet = ed.zoo.load("digits-unet")                                # ring attention inside UNet patch parallelism
    sig = ed.timesteps.uniform_t(STEPS, unet.process)
    x = ed.sampling.randn((4, 1, 8, 8), seed=3) * sig[0].float()
    ref = ed.sample(unet, x, sig, "ddim", cond=y)
    out = ed.sample(D.parallel(unet, "ring", comm=D.Comm(group)), x, sig, "ddim", cond=y)
    res["ring-unet"] = {"dev": float((out - ref).abs().max()), "out": out}
    comm = D.Comm(group)
    res["heads3"] = _layer_case(3, comm)
    res["heads4"] = _layer_case(4, comm)
    res["ulysses4"] = _layer_case(4, comm, UlyssesAttention)[1]
    try:
        UlyssesAttention(SelfAttention(24, 3), Runtime(comm, Exchange(comm)))
        res["ulysses3"] = None
    except ValueError as e:
        res["ulysses3"] = str(e)
    # ring_attention on uneven K/V content per rank: rank r's keys scaled so one rank's block dominates
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 2, 2, 5, 4, generator=g) for _ in range(3))     # [rank, B, H, n, d]
    k[1] *= 30.0
    r = comm.rank
    got = ring_attention(q[r], k[r], v[r], comm)
    full = _full(q[r], torch.cat([k[0], k[1]], -2), torch.cat([v[0], v[1]], -2))
    res["dominant"] = float((got.double() - full).abs().max())
    return res


@pytest.fixture(scope="module")
def ranks():
    return D.launch(_ranks_work, 3, threads=1)


def test_ring_parallel_dit_sample_equals_one_rank(ranks):
    for r in ranks[:2]:
        assert r["ring"]["dev"] <= EXACT, r["ring"]["dev"]
        assert r["ring-unet"]["dev"] <= EXACT, r["ring-unet"]["dev"]
    assert torch.equal(ranks[0]["ring"]["out"], ranks[1]["ring"]["out"])
    assert torch.equal(ranks[0]["ring-unet"]["out"], ranks[1]["ring-unet"]["out"])


def test_ring_takes_any_head_count(ranks):
    for r in ranks[:2]:
        assert "divisible" in r["ulysses3"]                            # Ulysses cannot split 3 heads over 2 ranks
        assert r["heads3"][0] < 1e-6 and r["heads4"][0] < 1e-6
        assert r["dominant"] < 1e-5


def test_bytes_are_one_kv_block_per_ring_step(ranks):
    # R=2: one step of (K, V) for B=2, n=8 tokens, D=24 floats -> (R-1) * 2 * 2 * 8 * 24 * 4 bytes
    for r in ranks[:2]:
        assert r["heads3"][1] == r["heads4"][1] == 1 * 2 * 2 * 8 * 24 * 4
        # at R=2 ring attention sends what Ulysses sends: K and V (2 n D) against half of q, k, v and out
        assert r["ulysses4"] == r["heads4"][1]
        # a DiT sample, per evaluation (CFG: batch 8): 6 blocks x one (K, V) block of 8 tokens x 96 channels,
        # plus the exit all-gather of 8 tokens x 4 output values
        assert r["ring"]["bytes"] == r["ring"]["nfe"] * (6 * 2 * 8 * 8 * 96 * 4 + 8 * 8 * 4 * 4)


def test_three_rank_ring_passes_every_block(ranks):
    # R=3, two hops: 18 tokens in slabs of 6; each rank sends (R-1) (K, V) blocks of [2, 6, 24] floats
    for r in ranks:
        dev, sent = r["three"]
        assert dev < 1e-6 and sent == 2 * 2 * 2 * 6 * 24 * 4


def test_ring_is_a_known_method_and_config():
    assert "ring" in D.METHODS
    assert D.PatchConfig(attention="ring").attention == "ring"
