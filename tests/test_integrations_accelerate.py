"""effdiff.accelerate on a tiny offline StableDiffusion-style pipeline: solver + registered
techniques in one call, and remove() gives back the original pipeline bit for bit."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from effdiff.hooks import hooks_of  # noqa: E402
from effdiff.integrations.accelerate import accelerate  # noqa: E402
from effdiff.integrations.scheduler import EffdiffScheduler  # noqa: E402
from tiny_pipelines import tiny_sd  # noqa: E402


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_sd(tmp_path_factory.mktemp("sd"))


def _run(pipe, steps=6):
    return pipe("a cat", num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np",
                guidance_scale=2.0).images


def _pristine(model):
    return all("forward" not in m.__dict__ and not hooks_of(m) for m in model.modules())


def test_deepcache_and_solver_then_remove_is_bit_exact(pipe):
    ref, old = _run(pipe), pipe.scheduler
    config = dict(pipe.config)
    with accelerate(pipe, solver="dpmpp-2m", steps=6, cache=("deepcache", {"interval": 3})) as h:
        assert isinstance(pipe.scheduler, EffdiffScheduler) and h.scheduler.config.solver == "dpmpp-2m"
        with pytest.warns(UserWarning, match="steps=6 was pinned"):
            fast = _run(pipe, steps=50)                 # steps=6 pinned: the call's 50 is overridden, loudly
        assert len(h.scheduler.timesteps) == 6
        # full steps 0 and 3 of 6 compute the 3 deep sites (one batched CFG call per step)
        assert (h.stats["deepcache"].computed, h.stats["deepcache"].reused) == (2 * 3, 4 * 3)
        assert 0 < abs(fast - ref).max()
    assert pipe.scheduler is old and dict(pipe.config) == config and _pristine(pipe.unet)
    assert (_run(pipe) == ref).all()


def test_exact_cache_config_changes_nothing_but_the_solver(pipe):
    """DeepCache with interval 1 inside the pipeline equals the solver alone (bit for bit)."""
    with accelerate(pipe, solver="heun"):
        plain = _run(pipe, steps=3)
    with accelerate(pipe, solver="heun", cache=("deepcache", {"interval": 1})) as h:
        cached = _run(pipe, steps=3)
        assert h.stats["deepcache"].reused == 0 and h.stats["deepcache"].computed == 5 * 3   # heun: 5 evaluations
    assert (plain == cached).all()


def test_bad_requests_leave_the_pipeline_untouched(pipe):
    old = pipe.scheduler
    with pytest.raises(ValueError, match="needs router"):          # l2c must be trained first
        accelerate(pipe, cache=["deepcache", "l2c"])
    with pytest.raises(ValueError, match="early-exit technique, not caching"):
        accelerate(pipe, cache="ase")
    with pytest.raises(KeyError, match="unknown technique"):
        accelerate(pipe, cache="nope")
    with pytest.raises(TypeError, match="unexpected keyword 'cach'"):
        accelerate(pipe, cach="deepcache")
    with pytest.raises(ValueError, match="supported"):
        accelerate(pipe, solver="paradigms")
    assert pipe.scheduler is old and _pristine(pipe.unet)


def test_int8_and_weight_quant_on_a_diffusers_unet_then_remove_is_bit_exact(pipe):
    """Quantization applies to diffusers' own modules: the int8 path through accelerate, and
    weight-only fake quant on the UNet directly; both come off exactly."""
    from effdiff.quant import QuantSpec, apply_weight_quant
    ref = _run(pipe, steps=3)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    with accelerate(pipe, solver="ddim", steps=3, quant=("int8", {"backend": "fbgemm"})) as h:
        q = _run(pipe, steps=3)
        st = h.stats["int8"]
        assert st.fbgemm + st.dequant > 10 and st.bytes_after < 0.5 * st.bytes_before
    with accelerate(pipe, solver="ddim", steps=3):
        plain = _run(pipe, steps=3)
    assert 0 < abs(q - plain).max() < 0.1
    with apply_weight_quant(pipe.unet, QuantSpec(4, granularity="channel")):
        w4 = _run(pipe, steps=3)
    assert 0 < abs(w4 - ref).max()
    assert _pristine(pipe.unet) and (_run(pipe, steps=3) == ref).all()
    assert all(torch.equal(v, before[k]) for k, v in pipe.unet.state_dict().items())


# ---- diffusers call semantics: the call's step count, per-call stats, threads ------------------

def test_the_calls_num_inference_steps_wins_and_stats_are_per_call(pipe):
    import warnings
    calls = []
    pipe.unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    with accelerate(pipe, solver="dpmpp-2m", cache=("deepcache", {"interval": 3})) as h:
        assert h.stats["deepcache"].computed == 0 and h.total["deepcache"].computed == 0
        with warnings.catch_warnings():
            warnings.simplefilter("error")                        # no pin, no warning
            _run(pipe, steps=6)
        assert len(calls) == 6 and len(h.scheduler.timesteps) == 6
        first = (h.stats["deepcache"].computed, h.stats["deepcache"].reused)
        assert first == (2 * 3, 4 * 3)
        calls.clear()
        _run(pipe, steps=9)                                       # 9 steps: full at 0, 3, 6
        assert len(calls) == 9
        assert (h.stats["deepcache"].computed, h.stats["deepcache"].reused) == (3 * 3, 6 * 3)
        assert (h.total["deepcache"].computed, h.total["deepcache"].reused) == (5 * 3, 10 * 3)
    pipe.unet._forward_pre_hooks.clear()


def test_int8_stats_set_at_apply_time_stay_visible_per_call(pipe):
    with accelerate(pipe, solver="ddim", quant=("int8", {"backend": "fbgemm"})) as h:
        _run(pipe, steps=2)
        _run(pipe, steps=2)
        assert h.stats["int8"].bytes_before == h.total["int8"].bytes_before > 0


@pytest.mark.parametrize("cache", [None, ("deepcache", {"interval": 2})])
def test_an_accelerated_pipeline_is_safe_from_two_threads(pipe, cache):
    """Issue 25, defect 10: two threads calling one accelerated pipeline (different step counts)
    get what each gets alone; no "cannot enter context" error."""
    import threading
    kw = {} if cache is None else {"cache": cache}
    with accelerate(pipe, solver="dpmpp-2m", **kw):
        alone = {n: _run(pipe, steps=n) for n in (4, 7)}
        out, errors, barrier = {}, [], threading.Barrier(2)

        def call(n):
            try:
                barrier.wait()
                for _ in range(2):
                    out[n] = _run(pipe, steps=n)
            except BaseException as e:   # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=call, args=(n,)) for n in (4, 7)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert not errors, errors
    assert all((out[n] == alone[n]).all() for n in (4, 7))


def test_a_plan_decides_solver_steps_and_techniques(pipe):
    from effdiff.plan.spec import Spec
    spec = Spec("dpmpp-2m", 6, "karras").use("deepcache:interval=3")
    with accelerate(pipe, solver="dpmpp-2m", steps=6, schedule="karras", cache=("deepcache", {"interval": 3})) as h:
        direct = _run(pipe, steps=6)
    with accelerate(pipe, plan=spec) as h:
        planned = _run(pipe, steps=6)
        assert h.stats["deepcache"].computed == 2 * 3 and h.scheduler.config.steps == 6
    assert (planned == direct).all()
    with accelerate(pipe, plan=["deepcache:interval=2"]) as h:       # a --use list on the default Spec
        assert h.scheduler.config.solver == "dpmpp-2m" and "deepcache" in h.handles
    with pytest.raises(TypeError, match="the plan decides"):
        accelerate(pipe, plan=spec, steps=4)
