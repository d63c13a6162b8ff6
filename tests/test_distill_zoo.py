"""Distilled students in the zoo: the bench finds students through their teacher chain, and a shipped
student loads with ``ed.zoo.load`` as a ready few-step denoiser (same samples as ``distill.load``)."""
import pytest
import torch

import effdiff as ed
from effdiff import distill, zoo
from effdiff.bench import distill as suite
from effdiff.data import digits
from effdiff.metrics import Scorer

SHIPPED = {"digits-dit-dmd-1step": ("dmd", 1, "digits-dit"), "digits-dit-cd-4step": ("cd", 4, "digits-dit"),
           "digits-unet-pd-4step": ("progressive", 4, "digits-unet"),
           "digits-unet-pd-2step": ("progressive", 2, "digits-unet"),
           "digits-unet-pd-1step": ("progressive", 1, "digits-unet"),
           "digits-dit-kd-1step": ("kd", 1, "digits-dit"), "digits-unet-kd-1step": ("kd", 1, "digits-unet"),
           "digits-unet-kd-2step": ("kd", 2, "digits-unet")}


def test_students_of_students_are_found_through_the_chain(tmp_path, monkeypatch):
    teacher = zoo.load("digits-unet")
    first = distill.from_teacher(teacher, distill.StudentSpec("progressive", "ddim", 6))
    distill.save(first, tmp_path / "pd6", "unet", {"teacher": "digits-unet", "teacher_nfe": 10, "steps": 1,
                                                   "wall_time_s": 1.0})
    tail = distill.from_teacher(first.denoiser, distill.StudentSpec("progressive", "ddim", 3))
    card = {"teacher": str(tmp_path / "pd6"), "teacher_nfe": 5, "steps": 1, "wall_time_s": 1.0}
    distill.save(tail, tmp_path / "pd3", "unet", card)
    distill.save(tail, tmp_path / "orphan5", "unet", {**card, "teacher": str(tmp_path / "missing")})
    assert suite.root_teacher(card) == "digits-unet"
    assert suite.root_teacher({"teacher": "digits-unet-pd-1step"}) == "digits-unet"     # a zoo student's chain
    assert suite.root_teacher({**card, "root_teacher": "digits-dit"}) == "digits-dit"   # recorded root wins
    monkeypatch.setenv("EFFDIFF_DISTILL_STUDENTS", f"{tmp_path / 'pd3'}:{tmp_path / 'orphan5'}")
    unet, dit = suite.students_for("digits-unet"), suite.students_for("digits-dit")
    assert unet["progressive-3"] == (str(tmp_path / "pd3"), 3)
    assert "progressive-5" not in unet and "progressive-3" not in dit and "progressive-5" not in dit
    # the shipped students are listed under their root teacher only
    assert {unet[k][0] for k in ("progressive-4", "progressive-2", "progressive-1")} == {
        "digits-unet-pd-4step", "digits-unet-pd-2step", "digits-unet-pd-1step"}
    assert dit["dmd-1"] == ("digits-dit-dmd-1step", 1) and "dmd-1" not in unet
    assert dit["cd-4"] == ("digits-dit-cd-4step", 4) and dit["cd-1"] == ("digits-dit-cd-4step", 1)   # multistep CD


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_student_loads_and_samples(name):
    method, steps, root = SHIPPED[name]
    assert name in zoo.names() and (zoo.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2 ** 20
    card = zoo.card(name)["card"]
    assert card["root_teacher"] == root and card["teacher_nfe"] > 0 and "fd_summary" in card["metrics"]
    assert "python -m effdiff.distill.presets" in card["command"]
    st = zoo.load(name)
    assert isinstance(st, distill.Student) and (st.spec.method, st.spec.steps) == (method, steps)
    assert not any(p.requires_grad for p in st.parameters())
    labels = torch.arange(4)
    with torch.no_grad():
        got = st.generate(4, cond=labels, seed=0, return_info=True)
        grid = st.grid()
        x = ed.sampling.randn((4, 1, 8, 8), seed=0) * float(grid[0])
        want = ed.sample(st, x, grid, st.spec.solver, labels, seed=0)
        by_path = distill.load(zoo.WEIGHTS / name).generate(4, cond=labels, seed=0)
    assert got.nfe == steps and torch.equal(got.x, want) and torch.equal(by_path, want)


def test_shipped_students_draw_the_asked_digits():
    """One class-balanced batch of 100 per student: recognisable digits of the asked class."""
    x_train, _ = digits("train")
    scorer = Scorer(zoo.load("digits-classifier"), x_train)
    labels = torch.arange(100) % 10
    for name in SHIPPED:
        with torch.no_grad():
            x = zoo.load(name).generate(100, cond=labels, seed=1)
        assert scorer.score(x, labels)["class_acc"] >= 0.9, name


def test_cli_samples_a_student_on_its_own_grid(tmp_path, capsys):
    """`effdiff sample --model <student>` uses the student's grid and solver, not the CLI's default
    DPM-Solver++ 10 steps (which would run 10 NFE on a 1-step student)."""
    from effdiff.cli import main
    main(["sample", "--model", "digits-unet-pd-1step", "--out", str(tmp_path / "s.png"), "--n", "4", "--quiet"])
    out = capsys.readouterr().out
    assert "1 NFE" in out and "ddim" in out and (tmp_path / "s.png").exists()
