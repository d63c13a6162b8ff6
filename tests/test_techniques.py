"""The technique registry (one interface for caches, early exit and what comes next) and the
sites module that finds the blocks techniques attach to."""
from dataclasses import dataclass

import pytest
import torch

import effdiff as ed
from effdiff import sites, techniques as T
from effdiff.caching import DeepCacheConfig
from effdiff.hooks import CacheStats, hooks_of

ALL = ["adaptive", "ase", "block-caching", "deediff", "deepcache", "delta-dit", "fora", "l2c", "nirvana", "tgate"]


@pytest.fixture(scope="module")
def unet():
    return ed.zoo.load("digits-unet")


@pytest.fixture(scope="module")
def dit():
    return ed.zoo.load("digits-dit")


def _run(den, steps=6):
    sig = ed.timesteps.uniform_t(steps, den.process)
    x = ed.sampling.randn((3, 1, 8, 8), seed=1) * sig[0].float()
    return x, sig, torch.arange(3)


def test_every_method_is_registered_with_its_family():
    assert sorted(T.names("caching") + T.names("early-exit")) == ALL
    assert set(ALL) <= set(T.names())
    assert T.names("early-exit") == ["ase", "deediff"]
    assert set(T.names("caching")) == set(ALL) - {"ase", "deediff"}
    with pytest.raises(ValueError, match="unknown family"):
        T.names("speed")
    with pytest.raises(KeyError, match="known: adaptive, ase"):
        T.get("deep-cache")


def test_needs_are_declared_for_trained_parts():
    assert {n: T.get(n).needs for n in ALL if T.get(n).needs} == {
        "block-caching": ("schedule",), "l2c": ("router",), "deediff": ("heads",)}
    for n in ALL:
        t = T.get(n)
        assert t.exact is not None and t.eager is not None and t.paper
        assert isinstance(t.exact(8), t.config) and isinstance(t.eager(8), t.config)


def test_applicable_follows_the_architecture(unet, dit):
    on_unet = {t.name for t in T.applicable(unet, "caching") + T.applicable(unet, "early-exit")}
    on_dit = {t.name for t in T.applicable(dit, "caching") + T.applicable(dit, "early-exit")}
    assert on_unet == {"adaptive", "block-caching", "deepcache", "nirvana"}
    assert {"fora", "delta-dit", "l2c", "ase", "deediff"} <= on_dit and "deepcache" not in on_dit
    assert "UNet" in T.get("deepcache").why_not(dit) and T.get("deepcache").why_not(unet) is None
    assert not T.get("tgate").applies_to(dit)        # no cross-attention
    with pytest.raises(TypeError, match="UNet"):
        T.get("deepcache").apply(dit)


def test_apply_takes_a_config_or_fields_and_checks_them(unet):
    x, sig, y = _run(unet)
    ref = ed.sample(unet, x, sig, "ddim", y)
    with T.get("deepcache").apply(unet, interval=1) as h:      # computes every step
        out = h.sample(unet, x, sig, "ddim", y)
    assert torch.equal(out, ref) and isinstance(h.stats, CacheStats) and h.stats.reused == 0
    with T.get("deepcache").apply(unet, DeepCacheConfig(interval=2)) as h:
        ed.sample(unet, x, sig, "ddim", y)
    assert h.stats.reused > 0 and h.stats.as_dict()["reuse_fraction"] == h.stats.reuse_fraction > 0
    with pytest.raises(TypeError, match="DeepCacheConfig"):
        T.get("deepcache").apply(unet, T.get("fora").config())
    with pytest.raises(ValueError, match="needs schedule"):
        T.get("block-caching").apply(unet)
    with pytest.raises(ValueError, match="run="):
        T.get("block-caching").prepare(unet)
    assert all(not hooks_of(m) for m in unet.modules())


def test_prepare_fills_what_a_technique_needs(unet):
    x, sig, y = _run(unet)
    t = T.get("block-caching")
    c = t.prepare(unet, t.eager(6), T.Run(x, sig, "ddim", y))
    assert c.schedule is not None and c.num_steps == 6
    with t.apply(unet, c) as h:
        ed.sample(unet, x, sig, "ddim", y)
    assert h.stats.reused > 0


def test_a_composition_is_a_list_of_names(unet):
    x, sig, y = _run(unet)
    ref = ed.sample(unet, x, sig, "ddim", y)
    h = T.apply(["deepcache", "nirvana"], unet, {"nirvana": T.get("nirvana").config(k_choices=(3,))})
    assert h.routes_requests and set(h.stats) == {"deepcache", "nirvana"}
    first = h.sample(unet, x, sig, "ddim", y)
    h.sample(unet, x, sig, "ddim", y)
    assert h.stats["nirvana"].reused == 3 and h.stats["deepcache"].reused > 0
    h.remove()
    assert all(not hooks_of(m) for m in unet.modules())
    assert not torch.equal(first, ref) and torch.equal(ed.sample(unet, x, sig, "ddim", y), ref)


def test_register_checks_family_config_and_name():
    @dataclass
    class Cfg:
        k: int = 1

    def apply(den, c):
        return None

    with pytest.raises(ValueError, match="unknown family"):
        T.register(T.Technique("x", "magic", Cfg, apply, lambda d: None))
    with pytest.raises(TypeError, match="dataclass"):
        T.register(T.Technique("x", "caching", dict, apply, lambda d: None))
    with pytest.raises(ValueError, match="already registered"):
        T.register(T.Technique("deepcache", "caching", Cfg, apply, lambda d: None))


def test_sites_find_blocks_through_wrappers(unet, dit):
    assert sites.network(ed.CFG(unet, 2.0)) is unet.net and sites.network(unet.net) is unet.net
    u = sites.unet(ed.CFG(unet, 2.0))
    names = [s for s, _ in sites.blocks(unet)]
    assert names[0] == "input_blocks.0" and "middle_block" in names and names[-1].startswith("output_blocks.")
    assert len(names) == len(u.input_blocks) + 1 + len(u.output_blocks)
    assert sites.kind(unet) == "unet" and sites.kind(dit) == "dit" and sites.kind(torch.nn.Linear(2, 2)) is None
    by_index = sites.select(dit, (1, -1))
    assert [s for s, _ in by_index] == ["blocks.1", f"blocks.{len(dit.net.blocks) - 1}"]
    assert sites.select(dit, ("blocks.1", f"blocks.{len(dit.net.blocks) - 1}")) == by_index
    assert sites.sublayer(dit.net.blocks[0], "attn") is dit.net.blocks[0].attn
    with pytest.raises(ValueError, match="unknown block"):
        sites.select(dit, ("blocks.99",))
    with pytest.raises(ValueError, match="out of range"):
        sites.select(dit, (99,))
    with pytest.raises(TypeError, match="tuple"):
        sites.select(dit, "blocks.1")
    with pytest.raises(TypeError, match="transformer"):
        sites.dit_blocks(unet, "FORA")
