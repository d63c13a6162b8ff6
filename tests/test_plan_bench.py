"""The plan bench suite's rows (reference, plan, best single configuration, naive stack) built from a
plan file, the CLI's plan verify, and the interactions table generated from a results file."""
import json

import pytest
import torch

import effdiff as ed
from effdiff.bench import interactions as I
from effdiff.bench import plan as BP
from effdiff.plan import Spec, file as F


def _candidate(spec: Spec, families, ms, ci, nfe):
    return {"label": spec.label(), "spec": spec.to_dict(), "families": list(families), "ms_per_sample": ms,
            "nfe": nfe, "quality": {"ci": ci, "mean": sum(ci) / 2, "values": [], "seeds": [], "text": ""}}


@pytest.fixture(scope="module")
def unet_plan():
    den = ed.zoo.load("digits-unet")
    single = Spec("dpmpp-2m", 6, "logsnr")
    cache = single.use("deepcache:interval=2")
    spec = Spec("dpmpp-2m", 5, "logsnr").use("deepcache:interval=2")
    cands = [_candidate(single, ["solver"], 5.0, [-0.02, 0.04], 6),
             _candidate(cache, ["solver", "caching"], 3.0, [-0.01, 0.03], 6),
             _candidate(cache.use("int8"), ["solver", "caching", "quant"], 2.0, [0.1, 0.3], 6),
             _candidate(Spec("dpmpp-2m", 10, "logsnr").use("deepcache:interval=3"), ["solver", "caching"], 4.0,
                        [-0.03, 0.02], 10)]
    return den, F.Plan(spec, Spec("heun", 10, "karras"), 0.05, "FD", F.weights_sha256(den), model="digits-unet",
                       certified={"ci": [-0.01, 0.04], "text": "+1% [-1, +4]", "seeds": [400, 401]},
                       search={"best_single": single.label(), "wall_s": 12.0, "found": True}, candidates=cands,
                       settings={"n": 8}, measure_key={"kind": "eval-fd", "dataset": "digits"})


def test_naive_stack_takes_each_familys_cheapest_holding_setting(unet_plan):
    _, p = unet_plan
    stack = BP.naive_stack(p)
    assert stack == Spec("dpmpp-2m", 6, "logsnr").use("deepcache:interval=2")     # 3.0 ms beats 4.0; int8 row failed


def test_plan_suite_rows_from_plan_files(unet_plan, tmp_path, monkeypatch):
    _, p = unet_plan
    monkeypatch.setenv("EFFDIFF_PLAN_DIR", str(tmp_path))
    for students in (False, True):
        p.save(tmp_path / f"digits-unet-5pct-{'students' if students else 'solo'}-quick.json")
    BP.PLANS.clear()
    rows = BP.configs("digits-unet", quick=True)
    names = [r.config.split(":")[0] for r in rows]
    assert names == ["reference heun/karras/10", "plan@5%", "best single@5%", "naive stack@5%", "plan@5%+students"]
    assert rows[0].reference and all(r.generate is not None for r in rows)
    res = ed.bench.run(["digits-unet"], "plan", quick=True, n_samples=12, n_seeds=2, repeats=1, configs=rows,
                       verbose=False, out=tmp_path / "out", grids=False)
    assert "fd_vs_ref_ci" in res["rows"][1] and (tmp_path / "out" / "plan.md").is_file()
    assert (tmp_path / "out" / "plans" / "digits-unet-5pct-solo.json").is_file()
    BP.PLANS.clear()


def test_plan_verify_cli(unet_plan, tmp_path, capsys):
    from effdiff.plan.cli import main
    _, p = unet_plan
    path = p.save(tmp_path / "plan.json")
    try:
        main(["verify", str(path), "--seeds", "2", "--n", "8"])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr().out
    assert ("holds:" in out and code == 0) or ("does NOT hold" in out and code == 1)
    assert "seeds 500-501" in out
    other = tmp_path / "other.json"
    d = json.loads(path.read_text())
    d["weights_sha256"] = "0" * 64
    other.write_text(json.dumps(d))
    with pytest.raises(F.WeightsMismatch):
        main(["verify", str(other), "--seeds", "2", "--n", "8"])


def test_interactions_table_is_generated_from_its_results_file(tmp_path):
    r = {"seeds": [600, 601, 602], "n": 10, "pairs": {"caching x students": {
        "model": "digits-unet", "a": "DeepCache N=2", "b": "PD student", "reference": "heun/karras/40",
        "specs": {"base": "dpmpp-2m/logsnr/10", "a": "x", "b": "y", "ab": "z"},
        "fd_change": {k: {"mean": m, "ci": [m - 0.01, m + 0.01]} for k, m in
                      (("base", 0.0), ("a", 0.02), ("b", 0.05), ("ab", 0.2))},
        "interaction": {"mean": 0.13, "ci": [0.1, 0.16]}}}}
    src = tmp_path / "i.json"
    src.write_text(json.dumps(r))
    text = I.table(r, str(src))
    assert "| caching x students | digits-unet |" in text and "interferes" in text and "+13" in text
    doc = f"intro\n<!-- interactions: {src} -->\nold\n<!-- /interactions -->\nend\n"
    new = I.write_block(doc, str(src), text)
    assert "old" not in new and text in new and new.endswith("<!-- /interactions -->\nend\n")
    with pytest.raises(ValueError, match="no <!-- interactions"):
        I.write_block("nothing", str(src), text)
    assert I.verdict([-0.1, 0.1]) == "no measurable interaction" and I.verdict([-0.3, -0.1]).startswith("helps")


def test_calibrated_parts_travel_in_the_plan_file(tmp_path):
    """PTQ's calibration (quantized weights, scale tables) is prepared once and stored beside the
    JSON as safetensors; the loaded plan samples exactly as the one that was saved."""
    from effdiff.plan.runs import Sampler
    den = ed.zoo.load("digits-unet")
    spec = Sampler(den, None).prepare(Spec("ddim", 3, "logsnr").use("ptq:w_bits=8,a_bits=8"))
    assert spec.techniques[0][1]["state"] is not None
    p = F.Plan(spec, Spec("heun", 5, "karras"), 0.05, "FD", F.weights_sha256(den), model="digits-unet")
    path = p.save(tmp_path / "q.json")
    assert (tmp_path / "q.safetensors").is_file() and "state" not in json.loads(path.read_text())["spec"]["techniques"][0][1]
    q = F.Plan.load(path)
    labels = torch.arange(4)
    assert torch.equal(q.sample(den, n=4, cond=labels, seed=5), p.sample(den, n=4, cond=labels, seed=5))
    (tmp_path / "q.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        F.Plan.load(path)


def test_plan_summary_table_is_generated_from_plan_files(unet_plan, tmp_path):
    _, p = unet_plan
    path = p.save(tmp_path / "s.json")
    text = BP.summary_table([str(path)])
    row = text.splitlines()[-1]
    assert row.startswith("| digits-unet | +5% | 8 | dpmpp-2m/logsnr/5 + deepcache(interval=2) | +1% [-1, +4] |")
    assert "12 s |" in row
