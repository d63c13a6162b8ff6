"""The video bench runs end to end on a tiny untrained video DiT: rows, paired CIs, the table."""
import json
import pytest
import torch

from effdiff import checkpoint as ckpt
from effdiff.bench import video as bench
from effdiff.video.model import VideoDiT, VideoDiTConfig
from effdiff.video import sparse
from effdiff.video.sampling import VideoModel


@pytest.fixture(scope="module", autouse=True)
def restore_registry():
    """The bench registers the attention techniques; leave the registry as this module found it."""
    yield
    sparse.unregister()


def tiny_model(path, seed: int = 0):
    torch.manual_seed(seed)
    cfg = VideoDiTConfig(hidden_size=16, depth=1, num_heads=2, block_frames=4, window_blocks=2)
    net = VideoDiT(cfg)
    if seed:                                   # past the zero init, so the output depends on the weights
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    from dataclasses import asdict
    meta = {"format": "effdiff-model-1", "arch": "video-dit", "task": "video", "model": asdict(cfg),
            "process": {"name": "flow"}, "prediction": "velocity", "num_classes": 10,
            "video": {"autoencoder": "mnist-ae"}, "card": {"preset": "test"}}
    path.mkdir(parents=True, exist_ok=True)
    ckpt.save(path / "model", net.state_dict(), meta)
    return path / "model"


def test_bench_rows_and_table(tmp_path):
    stem = tiny_model(tmp_path)
    vm = VideoModel.load(stem)
    c16 = bench.cost(vm, 16, "stream", 2, "euler")
    f16 = bench.cost(vm, 16, "full", 2, "euler")
    c32 = bench.cost(vm, 32, "stream", 2, "euler")
    assert c16["first_frame_macs"] < c16["macs"] / 3 and f16["first_frame_macs"] == f16["macs"]
    c48 = bench.cost(vm, 48, "stream", 2, "euler")
    assert c48["macs"] - c32["macs"] == c32["macs"] - c16["macs"]   # a bounded window: each later block costs the same
    f32 = bench.cost(vm, 32, "full", 2, "euler")
    assert f32["attention_macs"] > 3.5 * f16["attention_macs"]   # full attention: quadratic in frames
    ada = bench.cost(vm, 16, "stream", 2, "euler", "adaspa", {"density": 1.0})
    assert ada["macs"] == c16["macs"] and ada["attention_macs"] == c16["attention_macs"]   # one accounting
    res = bench.run(tmp_path / "out", lengths=(16, 32), n=8, n_long=2, seeds=(0, 1), steps=2, solver="euler",
                    repeats=1, model=stem)
    assert {r["mode"] for r in res["cost"]} == {"full", "stream"} and len(res["timing"]) == 6
    assert len(res["quality_paired"]["clip_fd"]["per_seed"]) == 2
    assert res["sparse_cost"][1]["attention_macs"] < res["sparse_cost"][0]["attention_macs"]
    assert "stream − full" in res["table"] and (tmp_path / "out" / "video.md").is_file()
    for m in ("full", "stream"):               # the samples are in the report: strip + GIF of the first seed
        assert (tmp_path / "out" / f"samples-{m}-16.png").is_file() and (tmp_path / "out" / f"samples-{m}-16.gif").is_file()
        assert f"(samples-{m}-16.png)" in (tmp_path / "out" / "video.md").read_text()


def test_parts_run_alone_and_render_as_generated_tables(tmp_path):
    import json
    from effdiff.bench import tables
    stem = tiny_model(tmp_path)
    res = bench.run(tmp_path / "q", lengths=(16,), n=6, seeds=(0, 1), steps=2, solver="euler", repeats=0, model=stem,
                    parts=("quality",))
    assert "quality" in res and "cost" not in res and "sparse_quality" not in res and res["timing"] == []
    assert res["table"] == bench.quality_table(res) and "stream − full" in res["table"]
    on_disk = json.loads((tmp_path / "q" / "video.json").read_text())
    assert tables.KINDS["video"]([on_disk], {"part": "quality"}) == res["table"]
    with pytest.raises(ValueError, match="unknown part 'nope'"):
        bench.render([on_disk], {"part": "nope"})
    with pytest.raises(ValueError, match="unknown bench parts"):
        bench.run(None, parts=("speed",), model=stem)
    cost = bench.run(None, lengths=(16,), n=2, seeds=(0,), steps=2, solver="euler", repeats=0, model=stem, parts=("cost",))
    assert "| 16 | stream |" in cost["table"] and "no wall clock in this run" in cost["table"]
    look = bench.run(None, lengths=(16,), n=2, seeds=(0,), steps=2, solver="euler", repeats=0, model=stem,
                     parts=("cost",), lookahead=8)           # the first block from an 8-frame full-sequence solve
    first = {r["mode"]: r["first_frame_macs"] for r in look["cost"]}
    plain = {r["mode"]: r["first_frame_macs"] for r in cost["cost"]}
    assert look["lookahead"] == 8 and "stream lookahead 8 frames" in look["table"]
    assert plain["stream"] < first["stream"] < first["full"] == plain["full"]


def test_quality_rows_at_a_longer_length_score_windows_against_real_clips_of_that_length(tmp_path):
    """quality_frames T: full and stream clips of T frames and real clips of T frames, scored in 16-frame windows;
    the caption says so, and the stream's kept lookahead blocks are named."""
    stem = tiny_model(tmp_path)
    res = bench.run(tmp_path / "q32", lengths=(32,), n=4, seeds=(0, 1), steps=2, solver="euler", repeats=0,
                    model=stem, parts=("quality",), quality_frames=32, lookahead=8, lookahead_blocks=2)
    assert all(q["frames"] == 32 for m in ("full", "stream") for q in res["quality"][m]["per_seed"])
    assert all(q["frames"] == 32 for q in res["real"]["real"]["per_seed"])
    assert res["table"].startswith("Quality at 32 frames (scored in 16-frame windows)")
    assert "stream lookahead 8 frames (its first 2 blocks kept)" in res["table"]
    assert (tmp_path / "q32" / "samples-stream-32.gif").is_file()
    assert "Motion against the real clips above" in res["table"] and "registered rule's motion" not in res["table"]
    t = res["quality_to_real"]["speed"]
    r = sum(q["speed"] for q in res["real"]["real"]["per_seed"]) / 2
    assert t["per_seed"] == pytest.approx([abs(b["speed"] - r) - abs(a["speed"] - r) for a, b in
                                           zip(res["quality"]["full"]["per_seed"], res["quality"]["stream"]["per_seed"])])
    with pytest.raises(ValueError, match="quality_frames"):
        bench.run(None, parts=("quality",), model=stem, quality_frames=8)


def test_adapter_table_pairs_the_adapted_row_with_each_from_scratch_row():
    q = [{"frame_fd": 10.0 + i, "clip_fd": 100.0 + i, "identity": 0.5, "label_acc": 0.4, "speed": 1.9, "accel": 2.0} for i in range(3)]
    base = [{**r, "clip_fd": r["clip_fd"] + 50 + i} for i, r in enumerate(q)]
    res = {"guidance": 1.0, "mode": "full", "n": 3, "seeds": [0, 1, 2], "arch": "video-adapter", "trainable_fraction": 0.117,
           "model": {"steps": 10, "batch_size": 8}, "quality": {"summary": bench.summary(q), "per_seed": q},
           "vs_from_scratch": {"scratch": {"summary": bench.summary(base),
                                           **{k: bench.paired(base, q, k) for k in bench.KEYS}}}}
    t = bench.render([res], {"part": "adapter"})
    assert "| video-adapter, 10 steps (batch 8) | 11.7% |" in t
    assert "| adapted − scratch (paired) | | +0.0 [+0.0, +0.0] | -51 [-53, -49] |" in t


def test_suite_video_runs_the_video_runner_with_the_generic_flags(monkeypatch, tmp_path):
    """``effdiff bench --suite video`` hands --out/--quick/--threads/--repeats/--guidance to the runner and
    refuses flags it has no use for."""
    from effdiff import cli
    seen = []
    monkeypatch.setattr(bench, "main", lambda argv=None: seen.append(argv))
    cli.main(["bench", "--suite", "video", "--quick", "--out", str(tmp_path), "--threads", "1", "--guidance", "4"])
    argv = seen[0]
    assert argv[argv.index("--out") + 1] == str(tmp_path) and "--quick" in argv
    assert argv[argv.index("--threads") + 1] == "1" and float(argv[argv.index("--guidance") + 1]) == 4.0
    for bad in (["--models", "digits-unet"], ["--seed", "5"], ["--no-cache"]):
        assert cli.main(["bench", "--suite", "video", *bad]) != 0
    assert len(seen) == 1


def test_sparse_rows_can_run_another_models_weights(tmp_path):
    """--sparse-model: the sparse rows run a second model (one fine-tuned under the pattern), the dense row the
    first; with the same weights and an exact pattern every paired change is 0, with other weights it is not."""
    stem, other = tiny_model(tmp_path / "a"), tiny_model(tmp_path / "b", seed=1)
    twin = tiny_model(tmp_path / "c")
    exact = {"sliding-tile": {"window": 10 ** 6}}
    kw = dict(lengths=(16,), n_long=2, seeds=(0, 1), steps=2, solver="euler", repeats=0, model=stem,
              parts=("sparse",), sparse=exact)
    same = bench.run(None, sparse_model=twin, **kw)
    diff = bench.run(None, sparse_model=other, **kw)
    assert all(v == 0 for v in same["sparse_quality"]["sliding-tile"]["paired"]["clip_fd"]["per_seed"])
    assert not all(v == 0 for v in diff["sparse_quality"]["sliding-tile"]["paired"]["clip_fd"]["per_seed"])
    assert same["sparse_model"]["sha256"] == same["model_sha256"] != diff["sparse_model"]["sha256"]
    assert "the sparse rows run the weights of" in diff["table"] and "sparse_model" not in bench.run(None, **kw)


def test_prereg_file_must_name_the_bench_rows(tmp_path):
    """A video pre-registration naming other rows or another suite is refused before any work."""
    import argparse
    import json
    from effdiff.bench.prereg import PreregError
    spec = {"format": "effdiff-prereg-1", "id": "x", "suite": "video", "models": ["video-dit"],
            "rows": ["dense", "adaspa"], "configs": {"adaspa": {"density": 0.25}}, "seeds": [60, 61, 62],
            "n_long": 2, "guidance": 1.0, "parts": ["sparse"], "decision_rule": "r"}
    for change in ({}, {"suite": "plan", "rows": ["dense", *bench.SPARSE], "configs": bench.SPARSE}):
        p = tmp_path / "p.json"
        p.write_text(json.dumps({**spec, **change}))
        with pytest.raises(PreregError):
            bench.registered(argparse.Namespace(prereg=str(p)))


def test_prereg_model_tensors_are_checked_before_the_run(tmp_path, monkeypatch):
    """A pre-registration's "model" / "sparse_model" ({path, sha256}) must be the registered tensors: the stem
    runs the rows when it is, and the run is refused before any work when it is not."""
    import argparse
    from effdiff.bench import prereg
    from effdiff.checkpoint import tensors_sha256
    from effdiff.video.sampling import VideoModel
    stem, other = tiny_model(tmp_path / "a"), tiny_model(tmp_path / "b", seed=1)
    sha = tensors_sha256(VideoModel.load(stem).den.net.state_dict())
    spec = {"id": "x", "rows": ["full", "stream"], "seeds": [1, 2, 3], "guidance": 1.0, "parts": ["quality"]}
    for key in ("model", "sparse_model"):
        monkeypatch.setattr(prereg, "for_runner", lambda path, suite, k=key: ({**spec, k: {"path": str(stem),
                                                                                            "sha256": sha}}, {}))
        a = argparse.Namespace(prereg="p.json", model=None, sparse_model=None, n=1, n_long=1)
        bench.registered(a)
        assert getattr(a, key) == str(stem) and a.seeds == [1, 2, 3]
        monkeypatch.setattr(prereg, "for_runner", lambda path, suite, k=key: ({**spec, k: {"path": str(other),
                                                                                            "sha256": sha}}, {}))
        with pytest.raises(prereg.PreregError, match=f"{key} .* has tensors"):
            bench.registered(argparse.Namespace(prereg="p.json", model=None, sparse_model=None, n=1, n_long=1))


def test_sparse_verdicts_follow_the_registered_rule():
    """A row meets only with <= 0.5x dense attention MACs and no interval on a score's worse side
    (speed: either side)."""
    def paired(**over):
        base = {k: {"mean": 0.0, "ci95": [-1.0, 1.0]} for k in bench.KEYS}
        return {**base, **{k: {"mean": 0.0, "ci95": list(v)} for k, v in over.items()}}
    res = {"sparse_cost": [{"technique": None, "attention_macs": 100}, {"technique": "a", "attention_macs": 50},
                           {"technique": "b", "attention_macs": 51}, {"technique": "c", "attention_macs": 10},
                           {"technique": "d", "attention_macs": 10}, {"technique": "e", "attention_macs": 10}],
           "sparse_quality": {"a": {"paired": paired(frame_fd=(-3, -1), identity=(0.1, 0.2))},
                              "b": {"paired": paired()}, "c": {"paired": paired(identity=(-0.2, -0.1))},
                              "d": {"paired": paired(speed=(0.1, 0.2))}, "e": {"paired": paired(clip_fd=(0.5, 2))}}}
    v = bench.sparse_verdicts(res)
    assert v["a"] == (True, []) and v["b"] == (False, [])
    assert v["c"] == (False, ["identity"]) and v["d"] == (False, ["speed"]) and v["e"] == (False, ["clip_fd"])


def test_to_real_measures_each_rows_distance_to_the_real_clips():
    """Speed and acceleration as |row - r| - |dense - r| per seed, r pooled over the seeds' real clips: a row
    that moves faster than dense but nearer the real speed is closer (negative), one that overshoots is farther."""
    real = [{"speed": 1.9, "accel": 1.2}, {"speed": 2.1, "accel": 1.4}]             # r = 2.0, 1.3
    dense = [{"speed": 1.8, "accel": 2.0}, {"speed": 1.8, "accel": 2.0}]
    near = [{"speed": 1.95, "accel": 2.1}, {"speed": 2.05, "accel": 1.9}]
    over = [{"speed": 2.4, "accel": 2.0}, {"speed": 2.3, "accel": 2.0}]
    t = bench.to_real(dense, near, real)
    assert t["speed"]["real"] == pytest.approx(2.0) and t["accel"]["real"] == pytest.approx(1.3)
    assert t["speed"]["per_seed"] == pytest.approx([0.05 - 0.2, 0.05 - 0.2])
    assert t["accel"]["per_seed"] == pytest.approx([0.1, -0.1])
    assert bench.to_real(dense, over, real)["speed"]["per_seed"] == pytest.approx([0.2, 0.1])


def test_the_to_real_motion_rule_judges_speed_and_acceleration_by_their_distance_to_real():
    """Under motion "to-real" a speed change vs dense no longer fails a row by itself; a row farther from the
    real clips' speed or acceleration fails, and the other scores keep their worse sides."""
    def paired(**over):
        base = {k: {"mean": 0.0, "ci95": [-1.0, 1.0]} for k in bench.KEYS}
        return {**base, **{k: {"mean": 0.0, "ci95": list(v)} for k, v in over.items()}}

    def to_real(speed=(-1.0, 1.0), accel=(-1.0, 1.0)):
        return {"speed": {"ci95": list(speed)}, "accel": {"ci95": list(accel)}}
    res = {"motion": "to-real",
           "sparse_cost": [{"technique": None, "attention_macs": 100}] + [
               {"technique": t, "attention_macs": 40} for t in "abcd"],
           "sparse_quality": {"a": {"paired": paired(speed=(0.1, 0.2)), "to_real": to_real(speed=(-0.2, -0.1))},
                              "b": {"paired": paired(), "to_real": to_real(speed=(0.05, 0.2))},
                              "c": {"paired": paired(), "to_real": to_real(accel=(0.1, 0.3))},
                              "d": {"paired": paired(identity=(-0.2, -0.1)), "to_real": to_real()}}}
    v = bench.sparse_verdicts(res)
    assert v["a"] == (True, []) and v["b"] == (False, ["speed to real"])
    assert v["c"] == (False, ["accel to real"]) and v["d"] == (False, ["identity"])
    assert bench.sparse_verdicts({**res, "motion": "dense"})["a"] == (False, ["speed"])
    with pytest.raises(ValueError, match="unknown motion rule"):
        bench.run(parts=("sparse",), motion="closer")


def test_jitter_table_renders_acceleration_by_block_position():
    row = lambda macs, acc: {"attention_macs": macs, "accel": sum(acc) / 4, "speed": 2.0, "accel_by_position": acc}
    res = {"seed": 1, "n": 4, "sparse_model": "m", "stream_options": {"overlap": 1},
           "rows": {"real": {"accel": 1.3, "speed": 2.0, "accel_by_position": [1.3] * 4},
                    "dense": row(100, [2.0, 1.9, 1.9, 2.0]),
                    "sliding-tile:w2": {**row(48, [2.4, 1.9, 2.0, 2.0]), "config": {"window": 2}}}}
    t = bench.render([res], {"part": "jitter"})
    assert "overlap 1" in t and "| real held-out clips | – | 1.30 | 1.30 | 1.30 | 1.30 |" in t
    assert '| sliding-tile:w2 {"window": 2} | 0.48x | 2.40 | 1.90 | 2.00 | 2.00 | 2.08 | 2.00 |' in t


def test_stream_jitter_table_renders_each_rows_options_and_positions():
    res = {"seed": 9, "n": 4, "frames": 32,
           "rows": {"real": {"accel": 1.3, "speed": 2.0, "accel_by_position": [1.3] * 4},
                    "full": {"options": {}, "accel": 1.9, "speed": 1.7, "accel_by_position": [1.9, 2.0, 1.9, 1.8]},
                    "stream O0": {"options": {"lookahead": 16, "overlap": 0}, "accel": 1.85, "speed": 1.8,
                                  "accel_by_position": [2.0, 1.8, 1.7, 1.9]}}}
    t = bench.render([res], {"part": "jitter"})
    assert "32 frames, seed 9" in t and "| real held-out clips |  | 1.30 | 1.30 | 1.30 | 1.30 | 1.30 | 2.00 |" in t
    assert "| stream O0 | lookahead 16, overlap 0 | 2.00 | 1.80 | 1.70 | 1.90 | 1.85 | 1.80 |" in t


def test_accel_profile_of_a_steadily_moving_square_is_zero_acceleration():
    """accel_profile: a square moving one pixel per frame along the columns has speed 1 and no acceleration; a
    jump of 2 pixels at frame 4 shows as |Δ²c| = 2 at frames 3 and 4 (block positions 3 and 0 of 4-frame blocks)."""
    T = 9
    x = -torch.ones(2, 1, T, 16, 16)
    cols = [t if t < 4 else t + 2 for t in range(T)]
    for t, c in enumerate(cols):
        x[:, 0, t, 6:10, c:c + 4] = 1.0
    p = bench.accel_profile(x, 4)
    acc = torch.tensor(p["accel_by_frame"])
    assert len(acc) == T - 2 and abs(acc[2] - 2) < 0.01 and abs(acc[3] - 2) < 0.01      # frames 3 and 4
    assert float(acc[[0, 1, 4, 5, 6]].abs().max()) < 0.01
    assert abs(p["accel_by_position"][0] - 2.0) < 0.01 and abs(p["accel_by_position"][3] - 1.0) < 0.01   # t=4; t=3, 7
    assert p["accel_by_position"][1] < 0.01 and abs(p["speed"] - 10 / 8) < 0.01


def test_explore_writes_each_rows_scores_beside_the_script(tmp_path):
    """explore: a one-seed exploration's rows, scored with label accuracy per block and (profile) the acceleration
    profile, written as explore-SEED.json beside the script."""
    rows = {"full": ("full", {}), "stream O1": ("stream", {"overlap": 1}), "teacher O0": ("teacher", {"overlap": 0})}
    out = bench.explore(str(tmp_path / "explore.py"), "What it asks.\n\nHow to run it.", rows, 3, 2, 16, profile=True,
                        steps=2)
    saved = json.loads((tmp_path / "explore-3.json").read_text())
    assert saved["what"] == "What it asks." and saved["rows"].keys() == rows.keys() and saved == json.loads(
        json.dumps(out))
    r = saved["rows"]["stream O1"]
    assert r["options"] == {"overlap": 1} and len(r["label_acc_per_block"]) == 4 and len(r["accel_by_position"]) == 4
    assert len(r["accel_by_frame"]) == 14 and 0 <= r["label_acc"] <= 1 and r["scores"]["frames"] == 16


@pytest.mark.parametrize("overlap", [0, 1])
def test_teacher_forced_samples_each_block_on_the_full_solves_blocks(overlap):
    """teacher_forced: block 1 is the full solve's; block 2, sampled on the full solve's block 1, is exactly the
    stream's block 2 when the stream's first block comes from the same full solve (lookahead = the clip), at any
    overlap; at 32 frames the later blocks are sampled too (shape), each from its own noise."""
    vm = VideoModel.load(None)
    vm.stream_options = {}
    tf = bench.teacher_forced(vm, 2, 5, 2, "dpmpp-2m", 4.0, overlap=overlap, frames=16)
    stream = vm.generate(vm.noise(2, 16, 5), bench.sigmas(2), "dpmpp-2m", bench.labels_for(2), mode="stream", scale=4.0,
                         lookahead=16, overlap=overlap)
    assert torch.equal(tf[:, :, :8], stream[:, :, :8]) and not torch.equal(tf[:, :, 8:], stream[:, :, 8:])
    long = bench.teacher_forced(vm, 2, 5, 2, "dpmpp-2m", 4.0, overlap=overlap, frames=32)
    full = vm.generate(vm.noise(2, 32, 5), bench.sigmas(2), "dpmpp-2m", bench.labels_for(2), mode="full", scale=4.0)
    assert long.shape == full.shape and torch.equal(long[:, :, :4], full[:, :, :4]) and torch.isfinite(long).all()


def test_label_tables_render_any_number_of_blocks_and_the_pooled_gaps():
    """first_block: one column per block of the results (4 at 16 frames, 8 at 32) and the summary's gaps after the
    table; label_pool: each run's gaps and the pooled row."""
    per = {"label_acc_per_block": [0.9] * 8, "label_acc": 0.9, "identity": 0.9, "speed": 1.9, "frame_fd": 8.0,
           "clip_fd": 30.0}
    res = {"n": 100, "seeds": [1, 2], "guidance": 4.0, "models": {"video-dit": {"sha256": "ab" * 32, "rows": {
        "full": {"1": per, "2": per}}}}, "gaps": {"blocks 3-8": {"stream": {"mean": -0.01, "ci95": [-0.02, 0.0]}}}}
    t = bench.first_block_table(res)
    assert "| block 8 |" in t and "| 0.900 |" in t and "blocks 3-8" in t and "stream -0.010 [-0.020, +0.000]" in t
    gap = {"mean": -0.01, "ci95": [-0.016, -0.005], "k": 25}
    pool = {"runs": {"a": {"what": "x", "seeds": [1, 2, 3], "label_acc": gap, "identity": gap}},
            "pooled": {"label_acc": gap, "identity": gap}}
    t = bench.render([pool], {"part": "label_pool"})
    assert "| a | x | 1-3 | -0.010 [-0.016, -0.005] |" in t and "25 seeds" in t
