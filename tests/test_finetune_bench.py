"""The finetune bench suite end to end on 2-step trainings: every row gets its columns."""
import pytest

pytest.importorskip("peft")


def test_suite_rows_and_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDIFF_FINETUNE_RUNS", str(tmp_path / "runs"))
    from effdiff.bench import finetune as fb
    from effdiff.bench.runner import run
    monkeypatch.setattr(fb, "QUICK_TRAINING", dict(steps=2, batch_size=4, warmup=1, ckpt_every=1))
    monkeypatch.setattr(fb, "STEPS", 4)
    configs = [c for c in fb.SUITES["finetune"]("digits-unet", True) if c.config in ("base", "lora", "lora-merged",
                                                                                    "controlnet-xs")]
    res = run(configs=configs, suite_name="finetune", quick=True, out=tmp_path / "out", n_samples=20, threads=1,
              verbose=False, grids=False)
    rows = {r["config"]: r for r in res["rows"]}
    assert set(rows) == {"base", "lora", "lora-merged", "controlnet-xs"}
    assert rows["base"]["trainable_params"] == 0 and "fd_target" in rows["base"] and "edge_iou" in rows["base"]
    lora, xs = rows["lora"], rows["controlnet-xs"]
    assert 0 < lora["trainable_params"] < 0.1 * lora["base_params"] and lora["file_bytes"] < 400_000
    assert "fd_target" in lora and "edge_iou" not in lora and lora["train_steps"] == 2
    assert "edge_iou" in xs and 0 <= xs["edge_iou"] <= 1 and "fd_target" not in xs
    assert rows["lora-merged"]["fd_target"] == pytest.approx(lora["fd_target"], rel=1e-3)   # merging is exact
    assert lora["train_ms_per_step"] > 0 and lora["train_peak_bytes"] > 0
    assert "FD vs target" in (tmp_path / "out" / "finetune.md").read_text()
