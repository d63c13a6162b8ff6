"""``--device`` on sample, bench and train (issue 23): the CPU path gives the same result as no flag; a
device this machine lacks is a one-line error (exit 2) naming it; and on another device the network,
the noise, the labels (and LoRA adapters, teachers) are all there. No GPU here: that check runs on
torch's ``meta`` device, with the availability check monkeypatched to accept it, and stops at the
first network evaluation after recording where its inputs and parameters live.
``--no-check-base``: a LoRA trained on other base weights is refused unless asked."""
import pytest
import torch
from safetensors.torch import load_file

import effdiff as ed
import effdiff.device as D
from effdiff.cli import main


def run_cli(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cpu_device_gives_the_same_samples(tmp_path, capsys):
    common = ["sample", "--model", "digits-dit", "--n", "6", "--steps", "3", "--quiet"]
    assert run_cli([*common, "--out", str(tmp_path / "a.png")], capsys)[0] == 0
    assert run_cli([*common, "--device", "cpu", "--out", str(tmp_path / "b.png")], capsys)[0] == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_cpu_device_trains_the_same_weights(tmp_path, capsys):
    args = ["train", "--preset", "toy2d", "--steps", "4", "--quiet"]
    assert run_cli([*args, "--out", str(tmp_path / "a")], capsys)[0] == 0
    assert run_cli([*args, "--device", "cpu", "--out", str(tmp_path / "b")], capsys)[0] == 0
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


COMMANDS = (["sample", "--n", "2"], ["bench", "--quick"], ["train", "--preset", "toy2d"])


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_a_missing_device_is_one_line_naming_it(cmd, tmp_path, capsys, monkeypatch):
    out = ["--out", str(tmp_path / ("o.png" if cmd[0] == "sample" else "o"))]
    if not torch.cuda.is_available():
        rc, _, err = run_cli([*cmd, "--device", "cuda:0", *out], capsys)
        assert rc == 2 and "'cuda:0'" in err and "CUDA is not available" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)      # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    rc, _, err = run_cli([*cmd, "--device", "cuda:3", *out], capsys)
    assert rc == 2 and "'cuda:3'" in err and "1 CUDA device" in err and len(err.strip().splitlines()) == 1
    for bad in ("tpu9", "meta"):
        rc, _, err = run_cli([*cmd, "--device", bad, *out], capsys)
        assert rc == 2 and repr(bad) in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())                    # refused before any work


class Stop(Exception):
    """Raised at the first network evaluation, once its devices are recorded."""


@pytest.fixture
def meta_device(monkeypatch):
    """``--device meta`` accepted; the finiteness checks (which read values) off; a list of what each first
    evaluation saw: (devices of its tensor inputs, devices of its parameters)."""
    import effdiff.sampling as S
    real = D.resolve
    monkeypatch.setattr(D, "resolve", lambda d: torch.device("meta") if str(d) == "meta" else real(d))
    monkeypatch.setattr(S, "check_x", lambda x: None)
    seen = []

    def stop_at_first_call(mod):
        def hook(m, args, kwargs):
            tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
            seen.append(({t.device.type for t in tensors}, {p.device.type for p in m.parameters()}))
            raise Stop
        mod.register_forward_pre_hook(hook, with_kwargs=True)
        return mod
    return seen, stop_at_first_call


@pytest.mark.parametrize("model,extra", [("digits-unet", []), ("digits-unet", ["--lora", "digits-unet-lora-thick"]),
                                         ("digits-dit", ["--guidance", "2"]), ("mnist-ldm-dit", [])])
def test_sample_puts_network_noise_and_labels_on_the_device(model, extra, meta_device, monkeypatch, tmp_path):
    seen, stop = meta_device
    load = ed.zoo.load
    monkeypatch.setattr(ed.zoo, "load", lambda name, device=None: stop(load(name, device=device)))
    with pytest.raises(Stop):
        main(["sample", "--model", model, "--device", "meta", "--n", "2", "--steps", "2", "--quiet",
              "--out", str(tmp_path / "m.png"), *extra])
    assert seen == [({"meta"}, {"meta"})]                  # x, σ, labels; every parameter (LoRA's too)
    assert not (tmp_path / "m.png").exists()


def test_bench_puts_every_row_on_the_device(meta_device, monkeypatch, tmp_path):
    seen, stop = meta_device
    load, asked = ed.zoo.load, []

    def spy(name, device=None):
        asked.append(device)
        return stop(load(name, device=device))
    monkeypatch.setattr(ed.zoo, "load", spy)
    with pytest.raises(Stop):
        main(["bench", "--quick", "--models", "digits-dit", "--device", "meta", "--quiet"])
    assert seen == [({"meta"}, {"meta"})] and torch.device("meta") in asked


@pytest.mark.parametrize("preset", ["toy2d", "digits-unet-lora-thick", "digits-dit-mg"])
def test_train_puts_networks_and_batches_on_the_device(preset, meta_device, monkeypatch, tmp_path):
    """Plain training, a fine-tune (frozen base + LoRA) and a Model Guidance fine-tune (with its EMA guide):
    when the loss is computed, the batch (x, labels, σ, ε) and every network the trainer holds are on the
    device."""
    from effdiff.training import placement
    seen, _ = meta_device
    place, moved = placement.place, []

    def spy(trainer, device):
        place(trainer, device)
        mods = placement.modules_of(trainer)
        moved.append({p.device.type for m in mods for p in m.parameters()})

        def record(*args, **kwargs):
            vals = [*args, *kwargs.values(), *(v for a in args if isinstance(a, dict) for v in a.values())]
            seen.append(({t.device.type for t in vals if torch.is_tensor(t)},
                         {p.device.type for m in mods for p in m.parameters()}))
            raise Stop
        trainer.loss_from = record                     # the drawn batch: x, y, sigma, eps
    monkeypatch.setattr(placement, "place", spy)
    with pytest.raises(Stop):
        main(["train", "--preset", preset, "--device", "meta", "--steps", "2", "--quiet", "--out", str(tmp_path / "r")])
    assert moved == [{"meta"}] and seen == [({"meta"}, {"meta"})]


def test_distillation_presets_refuse_another_device(meta_device, tmp_path, capsys):
    rc, _, err = run_cli(["train", "--preset", "digits-dit-dmd", "--device", "meta", "--out", str(tmp_path / "d")],
                         capsys)
    assert rc == 2 and "distillation preset 'digits-dit-dmd'" in err and "--device cpu" in err
    assert not (tmp_path / "d").exists()


def test_no_check_base_attaches_a_lora_of_other_base_weights(tmp_path, capsys):
    args = ["sample", "--model", "digits-dit-mg", "--lora", "digits-dit-lora-thick", "--n", "4", "--steps", "2",
            "--quiet"]
    rc, _, err = run_cli([*args, "--out", str(tmp_path / "a.png")], capsys)
    assert rc == 2 and "other base weights" in err and "--no-check-base" in err and not (tmp_path / "a.png").exists()
    rc, out, err = run_cli([*args, "--no-check-base", "--out", str(tmp_path / "b.png")], capsys)
    assert rc == 0 and (tmp_path / "b.png").is_file(), err
    rc, _, err = run_cli(["sample", "--n", "2", "--no-check-base", "--out", str(tmp_path / "c.png")], capsys)
    assert rc == 2 and "--no-check-base applies to" in err
