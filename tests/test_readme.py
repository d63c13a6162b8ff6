"""The README and docs state counts that come from the registries, and the README opens with
the two commands CI and users run."""
import pathlib
import re

import effdiff as ed

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _claims(word: str):
    """(file, number) for every "N registered <word>" in the README and docs."""
    for f in DOCS:
        for m in re.finditer(rf"(\d+) registered {word}", f.read_text()):
            yield f.name, int(m.group(1))


def test_solver_and_technique_counts_match_the_registries():
    solvers = len(ed.solvers.names())
    techniques = len(ed.techniques.names())
    claims = list(_claims("solvers"))
    assert claims, "the README states how many solvers are registered"
    assert all(n == solvers for _, n in claims), (claims, solvers)
    assert all(n == techniques for _, n in _claims("techniques")), (list(_claims("techniques")), techniques)


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("```bash") + len("```bash"):].split("```")[0].strip().splitlines()
    assert "effdiff bench" in block[0] and "pip install" in block[0]
    assert block[1].startswith("bash .ci/run")
    assert "pytest" in (ROOT / ".ci" / "run").read_text()
