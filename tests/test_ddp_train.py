"""Data-parallel training on 2 gloo ranks (one spawn for the file): the same global batch gives the
same loss curve and weights as one process; rank 0 alone writes; a killed run resumes."""
import json
from dataclasses import replace

import pytest
import torch

from effdiff import distributed as D
from effdiff.training import Trainer, preset
from effdiff.training.ddp import DDPTrainer, ddp_class, shard, take

STEPS, CUT = 12, 6
TOL = 1e-5


def config():
    # class-conditional digits DiT (label dropout, lognormal σ), the same with the batch-level tricks
    # (immiscible assignment over the global batch, PriorGrad whitening, REPA's head), and the 2-D MLP
    dit = preset("digits-dit", steps=STEPS, batch_size=16, warmup=3, ckpt_every=3,
                 model={"patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 2, "num_classes": 10})
    return {"dit": dit,
            "tricks": replace(dit, coupling="immiscible", prior="priorgrad",
                              repa={"encoder": "digits-classifier", "weight": 0.5, "layer": 1}),
            "toy": preset("toy2d", steps=STEPS, batch_size=32, warmup=3, ckpt_every=3)}


def _weights(tr):
    mods = {"net": tr.net, "ema": tr.ema, **({"repa": tr.repa.head} if getattr(tr, "repa", None) else {})}
    return {f"{n}.{k}": v.clone() for n, m in mods.items() for k, v in m.state_dict().items()}


def _ranks(root):
    import torch.distributed as dist
    out = {}
    for name, cfg in config().items():
        tr = DDPTrainer(cfg, f"{root}/{name}", progress=False)
        tr.prepare()
        out[name] = {"loss": [tr.train_step() for _ in range(STEPS)], "w": _weights(tr)}
    # killed after CUT steps (a checkpoint at CUT), resumed by fresh trainers on both ranks
    cfg = config()["dit"]
    ddp_class(Trainer)(cfg, f"{root}/resumed", progress=False).run(stop_after=CUT)
    tr = DDPTrainer(cfg, f"{root}/resumed", progress=False).run(resume=True)
    out["resumed"] = {"w": _weights(tr), "step": tr.step}
    out["export"] = str(tr.export({"note": dist.get_rank()}))
    try:
        DDPTrainer(cfg, f"{root}/resumed", progress=False).run()      # not empty, no --resume: both ranks refuse
        out["refused"] = None
    except (FileExistsError, RuntimeError) as e:
        out["refused"] = type(e).__name__
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    return root, D.launch(_ranks, 2, str(root))


@pytest.fixture(scope="module")
def single():
    out = {}
    for name, cfg in config().items():
        tr = Trainer(cfg, "unused", progress=False)
        out[name] = {"loss": [tr.train_step() for _ in range(STEPS)], "w": _weights(tr)}
    return out


@pytest.mark.parametrize("name", ["dit", "tricks", "toy"])
def test_two_ranks_match_one_process(ranks, single, name):
    _, res = ranks
    one = single[name]
    for r in res:
        assert r[name]["loss"] == pytest.approx(one["loss"], rel=TOL, abs=TOL)
        for k, v in one["w"].items():
            assert torch.allclose(r[name]["w"][k], v, rtol=TOL, atol=TOL), k
    assert res[0][name]["loss"] == res[1][name]["loss"]                   # every rank reports the global loss
    for k in one["w"]:
        assert torch.equal(res[0][name]["w"][k], res[1][name]["w"][k]), k   # ranks hold identical weights
    # a step does move the weights (the comparison is not vacuous)
    fresh = _weights(Trainer(config()[name], "unused", progress=False))
    assert max(float((one["w"][k] - fresh[k]).abs().max()) for k in fresh) > 1e-3


def test_resume_and_single_writer(ranks, single):
    root, res = ranks
    assert all(r["resumed"]["step"] == STEPS for r in res)
    for k, v in single["dit"]["w"].items():
        assert torch.allclose(res[0]["resumed"]["w"][k], v, rtol=TOL, atol=TOL), k
    d = root / "resumed"
    assert sorted(p.name for p in d.iterdir()) == ["checkpoint.json", "checkpoint.safetensors",
                                                   "model.json", "model.safetensors"]
    assert json.loads((d / "model.json").read_text())["card"]["metrics"] == {"note": 0}   # rank 0 wrote it
    assert json.loads((d / "checkpoint.json").read_text())["step"] == STEPS
    assert [r["refused"] for r in res] == ["FileExistsError", "RuntimeError"]


def test_slicing_helpers():
    assert [shard(8, r, 2) for r in range(2)] == [slice(0, 4), slice(4, 8)]
    with pytest.raises(ValueError, match="multiple of 3"):
        shard(8, 0, 3)
    d = {"x": torch.arange(8), "y": None, "stats": torch.zeros(10), "scalar": torch.tensor(1.0)}
    t = take(d, slice(4, 8), 8)
    assert t["x"].tolist() == [4, 5, 6, 7] and t["y"] is None and t["stats"].shape == (10,)
    with pytest.raises(RuntimeError, match="process group"):
        DDPTrainer(preset("toy2d"), "unused")
