"""Systems switches (techniques family "systems"): each runs the same network differently, stays
within its numeric tolerance of the plain run, and leaves no trace when removed."""
import pytest
import torch

import effdiff as ed
from effdiff import systems, techniques as T  # noqa: F401  (systems registers its techniques)


@pytest.fixture(scope="module")
def models():
    return {m: ed.zoo.load(m) for m in ("digits-unet", "digits-dit")}


def _gen(den, h=None):
    sig = ed.timesteps.uniform_t(5, den.process)
    x = ed.sampling.randn((4, 1, 8, 8), seed=2) * sig[0].float()
    run = h.sample if h is not None else (lambda *a, **k: ed.sample(*a, **k))
    return run(den, x, sig, "ddim", torch.arange(4))


# technique, config fields, max |x - x_plain| allowed (8x8 samples in [-1, 1], 5 DDIM steps); float32
# switches only reorder sums (channels_last measured 1.1e-5 on the UNet)
F32 = 1e-4
CASES = [("sdpa", {"backends": ("math",)}, F32), ("sdpa", {"backends": ("flash",)}, F32),
         ("channels-last", {}, F32), ("threads", {"num_threads": 1}, F32),
         # measured: bf16 0.29 (UNet) / 0.007 (DiT), fp16 0.008 / 0.001: bf16 keeps 8 mantissa bits
         ("autocast", {"dtype": "bfloat16"}, 0.4), ("autocast", {"dtype": "float16"}, 0.02)]


@pytest.mark.parametrize("name,fields,tol", CASES)
@pytest.mark.parametrize("model", ["digits-unet", "digits-dit"])
def test_switch_matches_the_plain_run_and_removes_cleanly(models, model, name, fields, tol):
    den = models[model]
    t = T.get(name)
    if t.why_not(den) is not None:
        pytest.skip(t.why_not(den))
    plain = _gen(den)
    with t.apply(den, **fields) as h:
        out = _gen(den, h)
    assert h.stats.calls == 5
    dev = float((out - plain).abs().max())
    assert dev <= tol, dev
    if name == "autocast":
        assert dev > 1e-5            # lower precision really ran
    assert torch.equal(_gen(den), plain)   # removed without a trace


def test_threads_switch_restores_the_thread_count(models):
    before = torch.get_num_threads()
    with T.get("threads").apply(models["digits-unet"], num_threads=1) as h:
        _gen(models["digits-unet"], h)
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_the_registry_lists_the_systems_family(models):
    assert T.names("systems") == ["autocast", "channels-last", "compile", "cuda-graphs", "sdpa", "threads"]
    on_cpu = {t.name for t in T.applicable(models["digits-unet"], "systems")}
    assert {"sdpa", "channels-last", "autocast", "threads", "compile"} <= on_cpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_graphs_say_why_not_without_cuda(models):
    t = T.get("cuda-graphs")
    assert "needs CUDA" in t.why_not(models["digits-unet"])
    with pytest.raises(ValueError, match="needs CUDA"):
        t.apply(models["digits-unet"])


def test_bad_switch_configs_are_clear_errors(models):
    den = models["digits-unet"]
    with pytest.raises(ValueError, match="unknown SDPA backend"):
        T.get("sdpa").apply(den, backends=("fast",))
    with pytest.raises(ValueError, match="autocast dtype"):
        T.get("autocast").apply(den, dtype="int8")
    with pytest.raises(ValueError, match="num_threads"):
        T.get("threads").apply(den, num_threads=0)
    with pytest.raises(TypeError, match="no torch network"):
        T.get("threads").apply(lambda x, s, c=None: x)


@pytest.mark.slow
def test_compile_matches_the_plain_run(models):
    den = models["digits-dit"]
    plain = _gen(den)
    with T.get("compile").apply(den) as h:
        out = _gen(den, h)
    assert float((out - plain).abs().max()) <= 1e-4
    assert torch.equal(_gen(den), plain)


def test_autocast_warns_where_the_cpu_would_emulate_the_dtype(models, monkeypatch):
    """A plan that kept bf16 on a CPU with AVX512-BF16 runs several times slower on one without it: autocast
    says so where the machine does not compute the dtype natively, and stays quiet where it does."""
    import warnings
    den = models["digits-dit"]
    monkeypatch.setattr(systems, "native_low_precision", lambda device="cpu": None)
    with pytest.warns(systems.EmulatedPrecisionWarning, match="emulated"):
        T.get("autocast").apply(den, dtype="bfloat16").remove()
    monkeypatch.setattr(systems, "native_low_precision", lambda device="cpu": "bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", systems.EmulatedPrecisionWarning)
        T.get("autocast").apply(den, dtype="bfloat16").remove()
    with pytest.warns(systems.EmulatedPrecisionWarning, match="float16"):
        T.get("autocast").apply(den, dtype="float16").remove()
