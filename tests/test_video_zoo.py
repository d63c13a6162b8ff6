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


def test_effdiff_sample_streams_a_video_model_into_a_strip_and_a_gif(tmp_path, capsys):
    """`effdiff sample` on a video model: a PNG strip (a row per clip) and a GIF (a frame per clip frame) next to it,
    each block reported as it is out; the same seed gives the same clips at another --n; image-only flags, a
    non-PNG --out, unknown --stream keys and streaming a full-sequence-only model are clear errors."""
    import numpy as np
    from PIL import Image
    from effdiff import cli
    out = tmp_path / "clips.png"
    assert cli.main(["sample", "--model", "video-dit", "--n", "2", "--frames", "8", "--steps", "2",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frames 0-3 out after" in text and "frames 4-7 out after" in text and "2 clips of 8 frames" in text
    strip = np.asarray(Image.open(out))
    gif = Image.open(out.with_suffix(".gif"))
    assert gif.n_frames == 8 and strip.shape[1] == 8 * 32 * 2 and strip.shape[0] == (2 * 32 + 2) * 2
    one = tmp_path / "one.png"
    assert cli.main(["sample", "--model", "video-dit", "--n", "1", "--frames", "8", "--steps", "2", "--quiet",
                     "--out", str(one)]) == 0
    assert np.array_equal(np.asarray(Image.open(one)), strip[:64])          # clip 0 alone: the same clip
    for bad in (["--model", "video-dit", "--use", "int8"], ["--model", "video-dit", "--out", str(tmp_path / "c.gif")],
                ["--model", "video-dit", "--stream", "bogus=1"], ["--model", "video-dit", "--stream", "overlap=x"],
                ["--model", "video-adapter", "--mode", "stream"], ["--model", "digits-unet", "--frames", "8"],
                ["--model", "video-dit", "--mode", "full", "--stream", "overlap=1"]):
        assert cli.main(["sample", "--n", "1", "--steps", "2", *bad] + ([] if "--out" in bad else
                                                                        ["--out", str(tmp_path / "x.png")])) != 0, bad
    assert not (tmp_path / "x.png").exists()


def test_the_sparse_model_samples_with_its_pattern_and_its_card_is_its_confirm(request):
    """video-dit-sparse (the ninth sparse confirm's fine-tune): loading applies the card's attention pattern, which is
    the one its registered confirm judged and met; the card's scores are that results file's; removing the pattern
    samples densely; a card naming an unknown technique is a clear error."""
    from effdiff.bench.video import sparse_verdicts
    from effdiff.video import sparse
    from effdiff.video.sampling import card_attention
    request.addfinalizer(sparse.unregister)                  # loading registers the attention techniques
    meta = assets.card("video-dit-sparse")
    res = json.loads((assets.WEIGHTS.parents[3] / "docs/bench/video/sparse-dense-head-confirm/video.json").read_text())
    row = "sliding-tile:w2a1h0"
    assert res["prereg"]["path"] == "docs/bench/prereg/video-sparse-dense-head-confirm.json"
    assert sparse_verdicts(res)[row] == (True, []) and res["motion"] == "to-real"
    assert res["sparse_model"]["sha256"] == meta["sha256"]["tensors"]
    att = meta["card"]["attention"]
    assert att == {"technique": "sliding-tile", "config": res["sparse_configs"][row]}
    m = meta["card"]["metrics"]
    for k in ("frame_fd", "clip_fd", "identity", "label_acc", "speed", "accel"):
        assert abs(res["sparse_quality"][row]["summary"][k] - m[f"{k}_stream"]) < 1e-9, k
    cost = res["sparse_cost"]
    assert abs(m["attention_macs_vs_dense"] - cost[1]["attention_macs"] / cost[0]["attention_macs"]) < 1e-12
    assert m["attention_macs_vs_dense"] <= 0.5
    vm = ed.zoo.load("video-dit-sparse")
    assert vm.stream_options == {}                            # judged on the plain stream
    procs = {id(a.processor): a.processor for a in sparse.attention_modules(vm.den)}
    (proc,) = procs.values()
    assert isinstance(proc, sparse.SlidingTile) and proc.config == sparse.SlidingTileConfig(window=2, ahead=1,
                                                                                            dense_heads=(0,))
    sig, y = torch.tensor([80.0, 1.0, 0.0]), torch.tensor([3, 7])
    z = vm.generate(vm.noise(2, 8, 0), sig, "euler", y)
    vm.attention.remove()
    dense = vm.generate(vm.noise(2, 8, 0), sig, "euler", y)
    assert z.shape == dense.shape == (2, 4, 8, 8, 8) and not torch.allclose(z, dense)
    assert all(not isinstance(a.processor, sparse.SlidingTile) for a in sparse.attention_modules(vm.den))
    assert card_attention({}) is None
    with pytest.raises(ValueError, match="attention must name one of"):
        card_attention({"attention": {"technique": "nope", "config": {}}}, "x.json")


def test_decoding_gives_the_same_frames_in_any_chunk_size():
    """The codec decodes in chunks of ``latents.BATCH`` frames (a working set that stays in cache: 2x faster than chunks
    of 512 frames on the bench machine); the frames do not depend on the chunking, a lone frame included."""
    from unittest.mock import patch

    from effdiff.video import latents
    vm = ed.zoo.load("video-dit")
    z = torch.randn(3, 4, 7, 8, 8, generator=torch.Generator().manual_seed(6))
    with patch.object(latents, "BATCH", 1024):
        whole = vm.decode(z)
    for size in (1, 4, 10):                                   # 21 frames: chunks of 1, 4 (a lone last frame), 10
        with patch.object(latents, "BATCH", size):
            assert torch.equal(vm.decode(z), whole), size
    assert torch.equal(vm.decode(z[:1, :, :1]), whole[:1, :, :1])   # one frame alone
