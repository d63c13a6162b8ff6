"""The distill bench suite: students found through $EFFDIFF_DISTILL_STUDENTS, sampled from the
teacher rows' noise (paired), scored and reported with their training cost and the FD-vs-NFE plot."""
import pytest
import torch

import effdiff as ed
from effdiff import distill, zoo
from effdiff.bench import distill as suite
from effdiff.bench.config import sigmas_for
from effdiff.bench.runner import run
from effdiff.sampling import randn


@pytest.fixture
def student_env(tmp_path, monkeypatch):
    teacher = zoo.load("digits-unet")
    st = distill.from_teacher(teacher, distill.StudentSpec("progressive", "ddim", 2))
    card = {"teacher": "digits-unet", "teacher_nfe": 123, "steps": 7, "wall_time_s": 1.0}
    distill.save(st, tmp_path / "pd2", "unet", card)
    monkeypatch.setenv("EFFDIFF_DISTILL_STUDENTS", str(tmp_path / "pd2"))
    return teacher


def test_suite_lists_reference_teacher_solvers_and_students(student_env):
    configs = suite._distill("digits-unet", quick=True)
    names = [c.config for c in configs]
    assert names[0] == "dpmpp-2m-10" and configs[0].reference and "ddim-4" in names
    row = next(c for c in configs if c.config == "progressive-2")
    assert row.baseline == "dpmpp-2m-10" and row.steps == 2
    # the student row samples from the row's noise, rescaled to its grid: paired with the teacher rows
    sig = sigmas_for(row, student_env.process)
    x = randn((4, 1, 8, 8), seed=3) * sig[0].float()
    labels = torch.arange(4)
    with torch.no_grad():
        got = row.generate(student_env, student_env, x, sig, labels, 3)
        grid = distill.grid(student_env.process, 2)
        want = ed.sample(student_env, x / sig[0].float() * grid[0].float(), grid, "ddim", labels, seed=3)
    assert got.nfe == 2 and torch.equal(got.x, want)      # at init the student is the teacher


@pytest.mark.slow
def test_distill_suite_end_to_end(student_env, tmp_path):
    configs = suite._distill("digits-unet", quick=True)
    ref, row = configs[0], next(c for c in configs if c.config == "progressive-2")
    out = run(configs=[ref, row], n_samples=20, n_seeds=2, repeats=1, out=tmp_path / "b", grids=False,
              verbose=False, suite_name="distill")
    assert out["rows"][1]["nfe"] == 2 and "fd_change_ci" in out["rows"][1]
    assert (tmp_path / "b" / "fd_vs_nfe.png").exists() and "123" in (tmp_path / "b" / "distill.md").read_text()
