"""Model kinds and the other registries the layers rest on: every shipped model names its kind and it agrees
with what its keys imply; files without a kind still load; a new kind registers without touching the zoo;
datasets register the same way; metrics and timesteps no longer pull their higher neighbours on import."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

import effdiff as ed
from effdiff import assets, checkpoint as ckpt, data, kinds, zoo


def _copy(name: str, tmp_path, edit=None):
    """A shipped model copied to tmp_path (JSON edited by ``edit(meta)``), as a path stem."""
    for suffix in (".safetensors", ".json"):
        shutil.copy(assets.WEIGHTS / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    if edit is not None:
        p = tmp_path / f"{name}.json"
        meta = json.loads(p.read_text())
        edit(meta)
        p.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return tmp_path / name


def test_shipped_models_name_their_kind_and_it_is_the_one_their_keys_imply():
    seen = set()
    for name in assets.names():
        meta = assets.card(name)
        if meta.get("format") != ckpt.MODEL_FORMAT:
            continue
        assert meta["kind"] == kinds.implied_kind(meta) == kinds.kind_of(meta), name
        seen.add(meta["kind"])
    assert seen == {"plain", "student", "latent", "video"}


@pytest.mark.parametrize("name,cls", [("digits-unet-pd-1step", "Student"), ("digits-unet", "Denoiser")])
def test_a_file_without_a_kind_loads_by_its_keys(tmp_path, name, cls):
    stem = _copy(name, tmp_path, lambda m: m.pop("kind"))
    den = zoo.from_checkpoint(stem, require_sha256=True)          # the recorded hashes still verify
    assert type(den).__name__ == cls
    x, s = torch.randn(2, 1, 8, 8), torch.full((2,), 3.0)
    assert torch.equal(den(x, s, torch.tensor([1, 2])), zoo.load(name)(x, s, torch.tensor([1, 2])))


def test_the_kind_decides_and_a_wrong_or_unknown_one_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="unknown model kind 'nope'; known: .*student"):
        zoo.from_checkpoint(_copy("digits-unet", tmp_path, lambda m: m.update(kind="nope")))
    with pytest.raises(ckpt.CheckpointError, match="names model kind 'plain', but its metadata is a 'student'"):
        zoo.from_checkpoint(_copy("digits-unet-pd-1step", tmp_path, lambda m: m.update(kind="plain")))


def test_a_new_kind_registers_without_the_zoo_knowing_it(tmp_path, monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "scaled", None)
    calls = []

    @kinds.register("scaled")
    def build(tensors, meta, where):
        calls.append(where)
        den = kinds.plain(tensors, meta, where)
        return lambda x, sigma, cond=None: 2 * den(x, sigma, cond)

    den = zoo.from_checkpoint(_copy("digits-unet", tmp_path, lambda m: m.update(kind="scaled")))
    x, s = torch.randn(2, 1, 8, 8), torch.full((2,), 3.0)
    assert calls and torch.equal(den(x, s), 2 * zoo.load("digits-unet")(x, s))


def test_datasets_register_and_list(monkeypatch):
    monkeypatch.setitem(data.DATASETS, "tiny", None)
    data.register_dataset("tiny", lambda split="train": (torch.zeros(3, 1, 2, 2), torch.arange(3)))
    assert "tiny" in data.dataset_names() and data.dataset("tiny")[0].shape == (3, 1, 2, 2)
    assert "mnist-latent" in data.dataset_names()                 # registered by effdiff.latent on first use
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known: .*mnist-latent"):
        data.dataset("nope")
    assert data.class_labels(12, 10).tolist() == [*range(10), 0, 1] and data.class_labels(3, 0) is None
    assert data.class_labels(5, 10, [3, 4]).tolist() == [3, 4, 3, 4, 3]


def test_lower_layers_do_not_pull_higher_ones_on_import():
    code = ("import sys, effdiff.metrics, effdiff.timesteps, effdiff.data, effdiff.kinds; "
            "print(sorted(m for m in sys.modules if m.startswith(('effdiff.zoo', 'effdiff.schedule_opt', "
            "'effdiff.metrics.evaluation', 'effdiff.metrics.reference', 'effdiff.bench', 'effdiff.latent'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert ed.metrics.evaluation is ed.metrics.evaluation and callable(ed.metrics.evaluation)   # still the function
