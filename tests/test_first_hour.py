"""A practitioner's first hour (issue 23): the CLI applies techniques and names devices, the zoo is a
table, --help says defaults and choices, the bench caches its reference rows and keeps finished rows
when killed, and the package's entry points show in dir(effdiff)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import effdiff as ed
from effdiff.cli import main


def run_cli(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_version_and_lazy_entry_points(capsys):
    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"effdiff {ed.__version__}"
    assert {"zoo", "accelerate", "techniques", "plan", "sample", "solvers"} <= set(dir(ed))


def test_help_lists_defaults_and_choices(capsys):
    def help_of(*cmd):
        assert main([*cmd, "--help"]) == 0
        return " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    bench = help_of("bench")
    assert "caching" in bench and "solvers-compact" in bench and "(default: default)" in bench
    assert "--quiet" in bench and "--device" in bench and "--no-cache" in bench
    sample = help_of("sample")
    assert "ays:MODEL" in sample and "trailing" in sample and "[default: dpmpp-2m]" in sample
    assert "(default: 100 images, 8 clips)" in sample and "--use" in sample and "--plan" in sample
    train = help_of("train")
    assert "digits-unet" in train and "mnist-ldm-dit" in train and "(default: cpu)" in train


def test_zoo_is_a_table_and_show_prints_a_card(capsys):
    rc, out, _ = run_cli(["zoo"], capsys)
    lines = out.splitlines()
    assert rc == 0 and lines[0].split()[:3] == ["name", "kind", "size"] and len(out) < 6000
    unet = next(ln for ln in lines if ln.startswith("digits-unet "))
    assert "2.04 ± 0.25" in unet and "dpmpp-2m logsnr 10" in unet and "3.0 MB" in unet
    assert "its own 2-step ddim grid" in next(ln for ln in lines if ln.startswith("digits-unet-pd-2step"))
    rc, out, _ = run_cli(["zoo", "show", "digits-dit"], capsys)
    assert rc == 0 and out.startswith("# digits-dit") and "/work/" not in out and "/root/" not in out
    rc, _, err = run_cli(["zoo", "show", "nope"], capsys)
    assert rc == 2 and "unknown zoo model 'nope'" in err


def test_sample_applies_techniques_with_use(tmp_path, capsys):
    out = tmp_path / "g.png"
    rc, text, err = run_cli(["sample", "--model", "digits-unet", "--n", "8", "--steps", "6", "--use",
                             "deepcache:interval=3", "--out", str(out)], capsys)
    assert rc == 0, err
    assert "+ deepcache" in text and "reused" in text and out.is_file()
    rc, _, err = run_cli(["sample", "--n", "2", "--use", "deepcache:nope=1", "--out", str(out), "--quiet"], capsys)
    assert rc == 2 and "nope" in err and len(err.strip().splitlines()) == 1


def test_sample_with_a_plan_file(tmp_path, capsys):
    from effdiff.plan.spec import Spec
    plan = tmp_path / "spec.json"
    plan.write_text(Spec("ddim", 4, "uniform").use("deepcache:interval=2").to_json())
    rc, text, err = run_cli(["sample", "--plan", str(plan), "--n", "4", "--out", str(tmp_path / "p.png"), "--quiet"],
                            capsys)
    assert rc == 0 and "ddim on uniform + deepcache, 4 NFE" in text, err
    rc, _, err = run_cli(["sample", "--plan", str(plan), "--steps", "3", "--out", str(tmp_path / "q.png")], capsys)
    assert rc == 2 and "drop --steps" in err


def test_a_student_says_what_it_does_instead(tmp_path, capsys):
    rc, text, _ = run_cli(["sample", "--model", "digits-unet-pd-2step", "--solver", "dpmpp-2m", "--steps", "10",
                           "--n", "4", "--out", str(tmp_path / "s.png")], capsys)
    assert rc == 0 and "2-step distilled student" in text and "--solver dpmpp-2m --steps 10 ignored" in text
    assert "2 NFE" in text


def test_zoo_names_work_where_files_do(tmp_path, capsys):
    rc, text, err = run_cli(["sample", "--model", "digits-unet", "--lora", "digits-unet-lora-thick:0.5", "--n", "4",
                             "--steps", "3", "--out", str(tmp_path / "l.png"), "--quiet"], capsys)
    assert rc == 0, err


def test_device_is_checked_before_work(tmp_path, capsys):
    den = ed.zoo.load("digits-dit", device="cpu")
    assert next(den.parameters()).device.type == "cpu"
    rc, _, err = run_cli(["sample", "--device", "cpu", "--n", "2", "--steps", "2", "--quiet",
                          "--out", str(tmp_path / "c.png")], capsys)
    assert rc == 0, err
    if not torch.cuda.is_available():
        for cmd in (["sample", "--n", "2"], ["bench", "--quick"], ["train", "--preset", "toy2d"]):
            rc, _, err = run_cli([*cmd, "--device", "cuda", "--out", str(tmp_path / "o.png")], capsys)
            assert rc == 2 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1
        with pytest.raises(ValueError, match="CUDA is not available"):
            ed.zoo.load("digits-unet", device="cuda")
    rc, _, err = run_cli(["sample", "--device", "tpu9", "--n", "2", "--out", str(tmp_path / "t.png")], capsys)
    assert rc == 2 and "device" in err


# ---- the bench: cached reference rows, rows kept when killed ------------------------------------

def test_reference_rows_are_cached_and_say_so(tmp_path, monkeypatch):
    from effdiff.bench.runner import run
    monkeypatch.setenv("EFFDIFF_CACHE", str(tmp_path / "cache"))
    kw = dict(models=["digits-dit"], quick=True, n_samples=16, threads=1, verbose=False)
    first = run(out=tmp_path / "a", **kw)
    assert "computed and cached" in first["cache"][0] and "cached" not in first["rows"][0]
    second = run(out=tmp_path / "b", **kw)
    ref1, ref2 = first["rows"][0], second["rows"][0]
    assert "scores read from the cache" in second["cache"][0] and ref2["cached"]
    assert ref1["fd_per_seed"] == ref2["fd_per_seed"] and ref1["nfe"] == ref2["nfe"] == 100
    assert second["rows"][1]["fd_vs_ref"] == first["rows"][1]["fd_vs_ref"]      # the same paired comparison
    assert 0.3 < ref2["ms_per_sample"] / ref1["ms_per_sample"] < 3             # timed now, on 20 of 100 steps
    assert (tmp_path / "b" / "grids" / "digits-dit__euler-100.png").is_file()
    fresh = run(out=tmp_path / "c", use_cache=False, **kw)
    assert "computed and cached" in fresh["cache"][0] and fresh["rows"][0]["fd_per_seed"] == ref1["fd_per_seed"]


def test_a_killed_bench_keeps_its_finished_rows(tmp_path):
    """results.json is written (atomically) after each model's rows: kill -9 during the second model."""
    out = tmp_path / "bench-out"
    env = {**os.environ, "EFFDIFF_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    code = ("from effdiff.bench.runner import run; run(models=['digits-dit', 'digits-unet'], quick=True, "
            f"n_samples=12, threads=1, verbose=False, use_cache=False, out={str(out)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (out / "results.json").is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (out / "results.json").is_file(), proc.stderr.read().decode()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is False and {r["model"] for r in res["rows"]} == {"digits-dit"}
    assert [r["config"] for r in res["rows"]] == ["euler-100", "ddim-10", "dpmpp-2m-10"]
    from effdiff.report import render
    assert "Partial run: 3 rows finished" in render(out)


def test_seeds_1_is_allowed_with_a_note(tmp_path, capsys, monkeypatch):
    import effdiff.bench.runner as runner
    calls = []
    monkeypatch.setattr(runner, "run", lambda **kw: calls.append(kw) or {"rows": [], "seeds": [0], "cache": [],
                                                                         "wall_time_s": 0.0})
    monkeypatch.setattr("effdiff.bench.run", runner.run)
    monkeypatch.setattr(runner, "table", lambda res: "")
    rc, text, err = run_cli(["bench", "--quick", "--seeds", "1"], capsys)
    assert rc == 0, err
    assert "no confidence interval" in text and calls[0]["n_seeds"] == 1
    rc, text, _ = run_cli(["bench", "--quick", "--quiet"], capsys)
    assert rc == 0 and calls[1]["verbose"] is False and text == ""


def test_the_readme_example_runs_and_saves_a_grid(tmp_path, monkeypatch):
    """The README's first Python block, verbatim, in an empty folder: it writes digits.png."""
    from PIL import Image
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text[text.index("```python") + len("```python"):].split("```")[0]
    assert len([ln for ln in block.strip().splitlines() if ln.strip()]) <= 6
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    img = Image.open(tmp_path / "digits.png")
    assert img.size[0] > img.size[1] > 0


def test_readme_solver_counts_say_unique_and_aliases():
    import re
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"(\d+) unique solvers and (\d+) aliases", text)
    groups = {}
    for name in ed.solvers.names():
        s = ed.solvers.get(name)
        groups.setdefault((s.fn, tuple(sorted((k, str(v)) for k, v in s.defaults.items()))), []).append(name)
    assert m and (int(m.group(1)), int(m.group(2))) == (len(groups), len(ed.solvers.names()) - len(groups))
