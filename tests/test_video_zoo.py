"""The video model in the zoo: model kind ``video`` (effdiff.kinds), loaded by name as a VideoModel whose
clips have the right shape; a video export that names another kind is refused; the card carries the
measured scores and the protocol that produced them."""
import json
import shutil

import pytest
import torch

import effdiff as ed
from effdiff import assets, checkpoint as ckpt, kinds
from effdiff.video.sampling import VideoModel
from effdiff.zoo.table import rows

NAME = "video-dit"


@pytest.mark.parametrize("name", [NAME, "video-adapter"])
def test_the_video_models_are_zoo_models_of_kind_video(name):
    meta = assets.card(name)
    assert meta["kind"] == kinds.implied_kind(meta) == kinds.kind_of(meta) == "video"
    assert (assets.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2 ** 20
    vm = ed.zoo.load(name)
    assert isinstance(vm, VideoModel) and not any(p.requires_grad for p in vm.den.net.parameters())
    z = vm.generate(vm.noise(2, 4, 0), torch.tensor([80.0, 1.0, 0.0]), "euler", torch.tensor([3, 7]), mode="full")
    assert z.shape == (2, 4, 4, 8, 8) and torch.isfinite(z).all()
    assert {"name": name, "kind": f"video ({meta['arch']})"}.items() <= next(r for r in rows() if r["name"] == name).items()


def test_the_streaming_model_streams_and_is_the_default():
    meta = assets.card(NAME)
    assert meta["kind"] == kinds.implied_kind(meta) == kinds.kind_of(meta) == "video"
    assert (assets.WEIGHTS / f"{NAME}.safetensors").stat().st_size < 5 * 2 ** 20
    vm = ed.zoo.load(NAME)
    assert isinstance(vm, VideoModel) and not any(p.requires_grad for p in vm.den.net.parameters())
    z = vm.generate(vm.noise(2, 4, 0), torch.tensor([80.0, 1.0, 0.0]), "euler", torch.tensor([3, 7]), mode="stream")
    assert z.shape == (2, 4, 4, 8, 8) and torch.isfinite(z).all()
    assert vm.decode(z).shape == (2, 1, 4, 32, 32)
    same = VideoModel.load()                                       # the default is the zoo's file
    full = same.generate(vm.noise(2, 4, 0), torch.tensor([80.0, 1.0, 0.0]), "euler", torch.tensor([3, 7]), mode="full")
    assert full.shape == z.shape


def test_a_video_export_naming_another_kind_is_refused(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(assets.WEIGHTS / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    p = tmp_path / f"{NAME}.json"
    meta = json.loads(p.read_text())
    meta["kind"] = "plain"
    p.write_text(json.dumps(meta, indent=1, sort_keys=True))
    with pytest.raises(ckpt.CheckpointError, match="names model kind 'plain', but its metadata is a 'video'"):
        ed.zoo.from_checkpoint(tmp_path / NAME)
    tensors, meta = ckpt.load(assets.path(NAME))
    meta.pop("video")
    with pytest.raises(ckpt.CheckpointError, match="needs its 'video' metadata"):
        kinds.get("video")(tensors, meta, "an edited export")


def test_the_card_carries_measured_scores_and_their_protocol():
    card = assets.card(NAME)["card"]
    m = card["metrics"]
    for k in ("frame_fd_full", "clip_fd_full", "clip_fd_stream", "identity_full", "label_acc_full", "clip_fd_real",
              "clip_fd_shuffled"):
        assert isinstance(m[k], float), k
    assert "effdiff.bench.video" in m["metrics_protocol"] and "docs/bench/video/video.json" in m["metrics_protocol"]
    res = json.loads((assets.WEIGHTS.parents[3] / "docs/bench/video/video.json").read_text())
    assert abs(res["quality"]["full"]["summary"]["clip_fd"] - m["clip_fd_full"]) < 1e-3   # the card is the results file
    assert res["guidance"] == m["guidance"] and res["model_sha256"] == assets.card(NAME)["sha256"]["tensors"]
    assert {"name": NAME, "kind": "video (video-dit)"}.items() <= next(r for r in rows() if r["name"] == NAME).items()


def test_the_adapter_card_is_its_results_file():
    meta, res = assets.card("video-adapter"), json.loads((assets.WEIGHTS.parents[3] / "docs/bench/video/adapter.json").read_text())
    m = meta["card"]["metrics"]
    assert res["model_sha256"] == meta["sha256"]["tensors"] and m["trainable_fraction"] <= 0.25
    assert abs(res["quality"]["summary"]["clip_fd"] - m["clip_fd_full"]) < 1e-3 and "adapter.json" in m["metrics_protocol"]
