"""Pre-registration (effdiff.bench.prereg) and provenance: a run on an uncommitted or edited file is
refused, a committed one is accepted and its commit lands in results.json beside the code's commit."""
import json
import subprocess

import pytest

from effdiff.bench import prereg as P
from effdiff.bench.provenance import code_state, provenance

SPEC = {"format": P.FORMAT, "id": "t", "suite": "default", "models": ["digits-dit"],
        "rows": ["euler-100", "ddim-10"], "seeds": [40, 41, 42], "n_samples": 16, "threads": 1,
        "decision_rule": "ddim-10 is within 10% if the upper end of its 95% CI is below +10%"}


def sh(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    sh(tmp_path, "init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    sh(tmp_path, "add", "src/code.py")
    sh(tmp_path, "commit", "-q", "-m", "code")
    return tmp_path


def write(repo, spec=SPEC, name="prereg.json"):
    f = repo / name
    f.write_text(json.dumps(spec, indent=1))
    return f


def test_uncommitted_file_is_refused(repo):
    f = write(repo)
    with pytest.raises(P.PreregError, match="not committed"):
        P.committed(f)
    sh(repo, "add", f.name)                       # staged is not committed
    with pytest.raises(P.PreregError, match="staged but not committed"):
        P.committed(f)


def test_committed_file_is_accepted_and_edits_are_refused(repo):
    f = write(repo)
    sh(repo, "add", f.name)
    sh(repo, "commit", "-q", "-m", "prereg")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    reg = P.committed(f)
    assert reg["commit"] == head and reg["path"] == "prereg.json" and reg["commit_time"]
    write(repo, {**SPEC, "seeds": [0, 1, 2]})     # edited after the commit (e.g. seeds swapped for used ones)
    with pytest.raises(P.PreregError, match="differs from its committed version"):
        P.committed(f)
    sh(repo, "add", f.name)                       # staging the edit does not register it either
    with pytest.raises(P.PreregError, match="differs"):
        P.committed(f)


def test_file_outside_git_is_refused(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(SPEC))
    with pytest.raises(P.PreregError, match="not inside a git work tree"):
        P.committed(f)


@pytest.mark.parametrize("bad, msg", [({"seeds": [1, 3, 4]}, "consecutive"), ({"decision_rule": ""}, "decision_rule"),
                                      ({"format": "x"}, "format")])
def test_malformed_files_are_refused(tmp_path, bad, msg):
    with pytest.raises(P.PreregError, match=msg):
        P.read(write(tmp_path, {**SPEC, **bad}))


def test_rows_must_exist_and_include_the_reference():
    with pytest.raises(P.PreregError, match="not in suite"):
        P.configs_for({**SPEC, "rows": ["euler-100", "no-such-row"]})
    with pytest.raises(P.PreregError, match="reference row"):
        P.configs_for({**SPEC, "rows": ["ddim-10"]})
    assert [c.config for c in P.configs_for(SPEC)] == ["euler-100", "ddim-10"]


def test_run_file_writes_the_registration(repo, monkeypatch, tmp_path):
    """run_file runs what the file names and writes its commit into results.json (runner stubbed)."""
    f = write(repo)
    sh(repo, "add", f.name)
    sh(repo, "commit", "-q", "-m", "prereg")
    out = tmp_path / "out"
    seen = {}

    def fake_run(**kw):
        seen.update(kw)
        out.mkdir()
        (out / "results.json").write_text(json.dumps({"rows": []}))
        return {}
    import effdiff.bench.runner as R
    monkeypatch.setattr(R, "run", fake_run)
    res = P.run_file(f, out, verbose=False)
    assert seen["seed"] == 40 and seen["n_seeds"] == 3 and [c.config for c in seen["configs"]] == SPEC["rows"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["prereg"]["commit"] == P.committed(f)["commit"] and saved == json.loads(json.dumps(res))
    assert saved["prereg"]["run_start_utc"] >= saved["prereg"]["commit_time"][:19]
    assert "code" in saved["provenance"] and "machine" in saved["provenance"]


def test_code_state_flags_a_dirty_tree(repo):
    clean = code_state(repo)
    assert clean["commit"] and clean["dirty"] is False
    (repo / "src" / "code.py").write_text("x = 2\n")
    dirty = code_state(repo)
    assert dirty["dirty"] is True and dirty["dirty_paths"] == ["src/code.py"] and dirty["diff_sha256"]
    assert provenance(repo)["code"]["commit"] == clean["commit"]


def test_cli_refuses_an_uncommitted_prereg(repo, capsys):
    """`effdiff bench --prereg FILE` on an uncommitted file exits 2 naming the problem, before any work."""
    from effdiff.cli import main
    f = write(repo)
    assert main(["bench", "--prereg", str(f), "--out", str(repo / "out")]) == 2
    assert "not committed" in capsys.readouterr().err
    sh(repo, "add", f.name)
    sh(repo, "commit", "-q", "-m", "prereg")
    # the file decides the seeds, not the command line
    assert main(["bench", "--prereg", str(f), "--out", str(repo / "out"), "--seeds", "5"]) == 2
    assert "drop --seeds" in capsys.readouterr().err
    assert not (repo / "out").exists()


def test_runner_writes_provenance(monkeypatch):
    """The runner's results.json carries the code's commit and dirty flag (taken when the run starts)."""
    import effdiff.bench.runner as R
    src = open(R.__file__).read()
    assert '"provenance": prov' in src and "prov = provenance()" in src


def test_follow_up_false_really_drops_the_follow_up(repo, monkeypatch, tmp_path):
    """"follow_up": false removes the suite's follow-up for the run (it once ran anyway: the suite's module
    registered it only while the rows were looked up) and restores it afterwards."""
    import effdiff.bench.runner as R
    spec = {**SPEC, "suite": "solvers-compact", "rows": ["heun-karras-250"], "models": ["digits-dit"],
            "follow_up": False}
    f = write(repo, spec)
    sh(repo, "add", f.name)
    sh(repo, "commit", "-q", "-m", "prereg")
    out, seen = tmp_path / "o", {}

    def fake_run(**kw):
        seen["during"] = kw["suite_name"] in R.FOLLOW_UPS
        out.mkdir()
        (out / "results.json").write_text(json.dumps({"rows": []}))
        return {}
    monkeypatch.setattr(R, "run", fake_run)
    P.run_file(f, out, verbose=False)
    assert seen["during"] is False and "solvers-compact" in R.FOLLOW_UPS
