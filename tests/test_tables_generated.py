"""Issue 24: the tables that were still typed are generated from the results files they cite (a planted
difference in the committed text is caught), ``effdiff tables`` wraps the generator, and the MNIST adapter
and Model Guidance cards are backed by results files scored on their shipped tensors."""
import copy

import pytest

from effdiff.bench import card_sources as CS
from effdiff.bench import tables as T
from effdiff.cli import main

GENERATED = [("docs/latent.md", "| 7.9x |", "| 8.0x |"),                        # cost per step
             ("docs/latent.md", "| 27 ± 3 |", "| 26 ± 3 |"),                    # timed comparison
             ("docs/latent.md", "| 0.916 | 0.81 / 0.92 |", "| 0.917 | 0.81 / 0.92 |"),   # card rows
             ("docs/finetuning.md", "| 4.29 ± 0.33", "| 4.30 ± 0.33"),          # MNIST fine-tunes
             ("docs/compression.md", "≤ 1.2% of MACs", "≤ 1.3% of MACs"),       # int8-auto MAC share
             ("docs/evaluation.md", "| 1.27 ± 0.14 |", "| 1.28 ± 0.14 |"),       # the protocol check
             ("docs/training.md", "| 0.358 ± 0.008 |", "| 0.357 ± 0.008 |"),    # OT coupling on the toy
             ("docs/bench/README.md", "| 0.92x | 2.0 ± 0.4 | +0.4% [-0.1, +0.8] |",   # the learned caching rerun
              "| 0.92x | 2.0 ± 0.4 | +0.3% [-0.1, +0.8] |")]


@pytest.mark.parametrize("path,old,new", GENERATED, ids=lambda v: str(v)[:24])
def test_committed_blocks_equal_their_render_and_a_planted_change_is_caught(path, old, new):
    text = (T.ROOT / path).read_text()
    assert old in text and T.regenerate(text) == text
    planted = text.replace(old, new, 1)
    assert T.regenerate(planted) != planted


def test_effdiff_tables_wraps_the_generator(monkeypatch, capsys):
    assert main(["tables", "--check"]) == 0
    monkeypatch.setattr(T, "stale", lambda root=T.ROOT: [(T.ROOT / "docs/latent.md", "planted")])
    assert main(["tables", "--check"]) == 1
    assert "docs/latent.md: table differs from its results (planted)" in capsys.readouterr().out


def test_adapter_and_mg_cards_equal_their_results_files():
    for name in CS.names():
        if name in CS.ADAPTERS and not CS.ADAPTERS[name].exists():
            pytest.fail(f"{name}: no results file")
        assert CS.check(name) == [], CS.check(name)


@pytest.mark.parametrize("name,key", [("mnist-ldm-dit-lora-thick", "fd_target_thick_dpmpp2m_logsnr20_n360_seeds012"),
                                      ("mnist-ldm-dit-controlnet-edges", "edge_iou_dpmpp2m_logsnr20_n360_seeds012"),
                                      ("digits-dit-lora-thick", "fd_target_thick_ddim20_n360_seeds012"),
                                      ("digits-dit-controlnet-edges", "edge_iou_ddim20_n360_seeds012")])
def test_a_hand_edited_adapter_card_is_caught(name, key, monkeypatch):
    meta = copy.deepcopy(CS._card(name))
    mean, sd = meta["card"]["metrics"][key].split(" ± ")
    meta["card"]["metrics"][key] = f"{float(mean) + 0.01:.{len(mean.split('.')[1])}f} ± {sd}"
    monkeypatch.setattr(CS, "_card", lambda n: meta)
    assert any(f"card {key}" in p for p in CS.check(name))
    meta["card"]["metrics"][key] = f"{mean} ± {sd}"
    assert CS.check(name) == []
    meta["sha256"]["tensors"] = "0" * 64                  # other weights than the file scored
    assert any("scored other weights" in p for p in CS.check(name))


def test_a_hand_edited_mg_card_is_caught(monkeypatch):
    name = "digits-dit-mg"
    meta = copy.deepcopy(CS._card(name))
    assert CS.check(name) == []
    meta["card"]["metrics"]["fd_dpmpp-2m_logsnr_20"] += 0.01
    monkeypatch.setattr(CS, "_card", lambda n: meta)
    assert any("card fd_dpmpp-2m_logsnr_20" in p for p in CS.check(name))
    meta["card"]["metrics"]["fd_change_vs_cfg_1.5"] = "+5% [-11, +28] (CFG 1.5)"
    assert any("FD change" in p for p in CS.check(name))
    meta["sha256"]["tensors"] = "0" * 64
    assert any("scored other weights" in p for p in CS.check(name))
