"""Fine-tuning runs: only the method's parameters move, a kill + resume is bit-identical, exports load."""
import pytest
import torch

pytest.importorskip("peft")

from effdiff import checkpoint as ckpt, zoo  # noqa: E402
from effdiff.finetune import FinetuneConfig, FinetuneTrainer, load, preset, PRESETS  # noqa: E402

TINY = dict(steps=4, batch_size=8, warmup=1, ckpt_every=2, ema_decay=0.9)
CASES = {"lora": dict(method="lora", method_args={"rank": 2}, domain="thick"),
         "controlnet-xs": dict(method="controlnet-xs", condition="edges")}


def state(tr):
    t, _ = tr.state()
    return t


@pytest.mark.parametrize("case", list(CASES))
def test_kill_and_resume_is_bit_identical(tmp_path, case):
    cfg = FinetuneConfig(**TINY, **CASES[case])
    whole = FinetuneTrainer(cfg, tmp_path / "whole", progress=False).run()
    FinetuneTrainer(cfg, tmp_path / "killed", progress=False).run(stop_after=2)
    resumed = FinetuneTrainer(cfg, tmp_path / "killed", progress=False).run(resume=True)
    a, b = state(whole), state(resumed)
    assert resumed.step == whole.step == 4 and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_only_the_adapter_moves_and_the_export_reproduces_it(tmp_path):
    cfg = FinetuneConfig(**{**TINY, "ema_decay": 0.0}, **CASES["lora"])
    tr = FinetuneTrainer(cfg, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    tr.run()
    after = tr.net.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved and all(".lora_" in k for k in moved)
    assert tr.trainable_count < 0.1 * sum(v.numel() for k, v in after.items() if ".lora_" not in k)
    stem = tr.export()
    den = load("digits-unet", stem)
    x, s, y = torch.randn(4, 1, 8, 8), torch.full((4,), 1.5), torch.arange(4)
    with torch.no_grad():
        assert torch.allclose(den(x, s, y), tr.denoiser.eval()(x, s, y), atol=1e-6, rtol=0)
    assert stem.with_suffix(".safetensors").stat().st_size < 400_000


def test_full_fine_tune_export_loads(tmp_path):
    cfg = FinetuneConfig(**{**TINY, "steps": 2, "ema_decay": 0.0}, method="full", domain="inverted")
    tr = FinetuneTrainer(cfg, tmp_path / "run", progress=False).run()
    assert tr.trainable_count == sum(p.numel() for p in zoo.load("digits-unet").net.parameters())
    den = load("digits-unet", tr.export())
    assert torch.equal(den.net.out[-1].weight, tr.net.out[-1].weight)


def test_resume_refuses_another_config(tmp_path):
    FinetuneTrainer(FinetuneConfig(**TINY, **CASES["lora"]), tmp_path / "r", progress=False).run(stop_after=2)
    other = FinetuneConfig(**TINY, method="lora", method_args={"rank": 3}, domain="thick")
    with pytest.raises(ckpt.CheckpointError, match="different config"):
        FinetuneTrainer(other, tmp_path / "r", progress=False).run(resume=True)


def test_config_errors_are_named():
    with pytest.raises(KeyError, match="unknown fine-tuning method"):
        FinetuneConfig(method="dora").validate()
    with pytest.raises(ValueError, match="condition must be one of"):
        FinetuneConfig(method="controlnet").validate()
    with pytest.raises(ValueError, match="takes no condition"):
        FinetuneConfig(method="lora", condition="edges").validate()
    with pytest.raises(ValueError, match="unknown target domain"):
        FinetuneConfig(domain="sepia").validate()
    with pytest.raises(KeyError, match="unknown fine-tuning preset"):
        preset("nope")
    assert all(p.validate() for p in PRESETS.values())


def test_shipped_adapters_load_onto_their_base():
    shipped = [n for n in zoo.names() if "-lora-" in n or "-controlnet" in n or "-t2i-" in n]
    for name in shipped:
        card = zoo.card(name)
        assert card["task"] in ("lora", "control") and card["card"]["trainable_params"] > 0
        assert (zoo.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2 ** 20
        model = load(card["card"]["base"], zoo.WEIGHTS / name)
        m = zoo.card(card["card"]["base"])["model"]                 # the network's own input (latents for an LDM)
        x, s, y = torch.randn(2, m["in_channels"], m["image_size"], m["image_size"]), torch.full((2,), 1.0), torch.arange(2)
        if card["task"] == "lora":
            with torch.no_grad():
                assert (model(x, s, y) - zoo.load(card["card"]["base"])(x, s, y)).abs().max() > 1e-4
