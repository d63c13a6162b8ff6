"""Bench studies (``effdiff.bench.studies``): every registered name resolves to a documented study, the list
and the command line reach them, and no study hard-codes an image shape or imports a private name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from effdiff import cli
from effdiff.bench import studies

STUDY_DIR = Path(studies.__file__).parent


def test_every_study_resolves_and_is_documented():
    for name in studies.MODULES:
        fn = studies.get(name)
        assert callable(fn) and (fn.__doc__ or "").strip(), name
    assert set(studies.STUDIES) == set(studies.MODULES) and studies.names() == sorted(studies.MODULES)


def test_the_list_and_the_command_line(capsys):
    assert studies.main([]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == studies.names()
    assert cli.main(["bench", "--study", "no-such-study"]) == 2
    assert "unknown bench study 'no-such-study'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:                 # a study's own arguments after its name
        cli.main(["bench", "--study", "depth-kd", "--help"])
    assert e.value.code == 0 and "usage: depth-kd" in capsys.readouterr().out


def _files():
    return sorted(STUDY_DIR.glob("*.py"))


def test_no_study_hard_codes_an_image_shape():
    shapes = ("1, 8, 8)", "1, 28, 28)", "4, 7, 7)")
    bad = [f"{p.name}: {s}" for p in _files() for s in shapes if s in p.read_text()]
    assert not bad, f"noise or batches in a fixed shape (use sampling.initial / the model's config): {bad}"


def test_no_study_imports_a_private_name():
    bad = []
    for p in _files():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                bad += [f"{p.name}:{node.lineno} {a.name}" for a in node.names if a.name.startswith("_")
                        and a.name != "__future__"]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and isinstance(node.value, ast.Name) and node.value.id not in ("self", "cls"):
                bad.append(f"{p.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not bad, bad
