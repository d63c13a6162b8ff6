"""The planner on a model effdiff did not train (pulfer's MNIST DDPM, ../shared/external; skipped when
absent): against the author's 1000-step DDPM sampler it finds a plan within budget without being told
which solver family works on that checkpoint. Slow: the reference pool alone is 12 x 128 samples of 1,000 network
calls (~36 CPU-minutes; docs/bench/plan/pulfer/README.md has the run that certified ddpm/trailing/5)."""
import pytest

from effdiff.bench import external

HAVE_MNIST = (external.EXTERNAL / "pulfer-ddpm-mnist" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MNIST, reason="../shared/external/pulfer-ddpm-mnist absent")
def test_planner_finds_an_in_budget_plan_for_pulfers_ddpm():
    from effdiff.bench.plan_external import plan_pulfer
    den, p = plan_pulfer("10%")
    assert p.spec is not None and p.holds, p.summary() + "\n" + "\n".join(p.rejected[:20])
    assert p.spec.steps * 2 < 1000                              # far fewer network calls than the author's sampler
    deterministic = [r for r in p.rejected if r.startswith(("ddim/", "dpmpp-2m/", "unipc/", "heun/"))]
    assert deterministic, "the deterministic solvers were tried and rejected (they produce noise on this model)"
