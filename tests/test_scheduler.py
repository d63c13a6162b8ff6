"""EffdiffScheduler: effdiff solvers as a diffusers scheduler, checked against ``ed.sample`` on
the same denoiser inside tiny offline pipelines (random weights, no downloads)."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import effdiff as ed  # noqa: E402
from effdiff.integrations.diffusers import DiffusersDenoiser  # noqa: E402
from effdiff.integrations.scheduler import EffdiffScheduler, evaluation_plan, supported_solvers  # noqa: E402
from tiny_pipelines import tiny_dit, tiny_sd  # noqa: E402

STEPS = 4


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    pipe = tiny_sd(tmp_path_factory.mktemp("sd"))
    emb, neg = pipe.encode_prompt("a cat", "cpu", 1, True, negative_prompt="")
    return pipe, pipe.scheduler, emb, neg


def _latents(seed=0):
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_plan_counts_every_evaluation_and_rejects_loop_solvers():
    sig = ed.timesteps.karras(5, 0.03, 14.6)
    assert [len(p) for p in evaluation_plan("heun", sig)] == [2, 2, 2, 2, 1]     # Heun: NFE 2n - 1
    assert [len(p) for p in evaluation_plan("dpmpp-2m", sig)] == [1] * 5
    assert evaluation_plan("heun", sig)[0] == pytest.approx([float(sig[0]), float(sig[1])])
    assert "heun" in supported_solvers() and "paradigms" not in supported_solvers()
    with pytest.raises(ValueError, match="supported: .*dpmpp-2m"):
        EffdiffScheduler(solver="dpm-solver-12")
    with pytest.raises(KeyError, match="unknown solver"):
        EffdiffScheduler(solver="nope")


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp-2m", "dpmpp-3m", "dpmpp-2s", "unipc", "dpmpp-2m-sde"])
def test_sd_pipeline_equals_ed_sample(sd, solver):
    """The pipeline's latents with EffdiffScheduler == ed.sample on DiffusersDenoiser (float tolerance)."""
    pipe, base, emb, _ = sd
    pipe.scheduler = EffdiffScheduler.from_config(base.config, solver=solver, schedule="karras", seed=3)
    try:
        out = pipe("a cat", num_inference_steps=STEPS, latents=_latents(), output_type="latent", guidance_scale=1.0).images
        grid = pipe.scheduler.grid
        res = ed.sample(DiffusersDenoiser(pipe.unet, base), _latents() * float(grid[0]), grid, solver, cond=emb,
                        seed=3, return_info=True)
        assert len(pipe.scheduler.timesteps) == res.nfe            # one model call per evaluation
    finally:
        pipe.scheduler = base
    assert _rel(out, res.x) < 1e-5


def test_sd_pipeline_with_guidance_equals_cfg_denoiser(sd):
    pipe, base, emb, neg = sd
    pipe.scheduler = EffdiffScheduler.from_config(base.config, solver="dpmpp-3m", schedule="ays")
    try:
        out = pipe("a cat", num_inference_steps=STEPS, latents=_latents(), output_type="latent", guidance_scale=3.0).images
        grid = pipe.scheduler.grid
    finally:
        pipe.scheduler = base
    den = ed.CFG(DiffusersDenoiser(pipe.unet, base), 3.0, null_cond=neg)
    assert _rel(out, ed.sample(den, _latents() * float(grid[0]), grid, "dpmpp-3m", cond=emb)) < 1e-5


def test_ays_table_and_config_round_trip(tmp_path):
    from diffusers.schedulers.scheduling_utils import AysSchedules
    base = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    sch = EffdiffScheduler.from_config(base.config, solver="dpmpp-2s", schedule="ays")
    sch.set_timesteps(10)
    starts = sch.timesteps[[j for j, (_, k, _) in enumerate(sch._plan) if k == 0]]
    assert torch.allclose(starts, torch.tensor(AysSchedules["StableDiffusionTimesteps"], dtype=torch.float32), atol=1e-2)
    assert sch.order == 2 and len(sch.timesteps) == 19
    sch.save_config(tmp_path)
    again = EffdiffScheduler.from_pretrained(tmp_path)
    again.set_timesteps(10)
    assert again.config.solver == "dpmpp-2s" and again.config.schedule == "ays"
    assert torch.equal(again.timesteps, sch.timesteps) and again.init_noise_sigma == sch.init_noise_sigma
    flow = EffdiffScheduler.from_config(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config, solver="heun")
    assert flow.config.flow and flow.config.shift == 3.0 and isinstance(flow.process, ed.process.Flow)


def test_dit_pipeline_equals_ed_sample():
    """DiTPipeline (never multiplies by init_noise_sigma, drops learned-sigma channels itself)."""
    pipe = tiny_dit()
    base = pipe.scheduler
    pipe.scheduler = EffdiffScheduler.from_config(base.config, solver="heun", schedule="uniform")
    img = pipe([3, 5], num_inference_steps=STEPS, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
               output_type="np").images
    grid = pipe.scheduler.grid
    z = diffusers.utils.torch_utils.randn_tensor((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    alpha0 = float(ed.process.VP().alpha_of_sigma(float(grid[0])))
    x = ed.sample(DiffusersDenoiser(pipe.transformer, base), z / alpha0, grid, "heun", cond=torch.tensor([3, 5]))
    with torch.no_grad():
        ref = (pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    assert abs(img - ref.permute(0, 2, 3, 1).numpy()).max() < 1e-4


def test_flow_model_in_a_hand_written_loop():
    """Flow-matching (FlowMatch config): latents are x_t = x / (1 + σ); velocity -> x0."""
    torch.manual_seed(0)
    dit = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, num_layers=1,
                                          sample_size=8, patch_size=2, norm_num_groups=8, num_embeds_ada_norm=10).eval()
    base = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sch = EffdiffScheduler.from_config(base.config, solver="dpmpp-2m")
    sch.set_timesteps(STEPS)
    lat = _latents() * sch.init_noise_sigma
    lab = torch.tensor([2])
    with torch.no_grad():
        for t in sch.timesteps:
            lat = sch.step(dit(sch.scale_model_input(lat, t), t.expand(1), class_labels=lab).sample, t, lat).prev_sample
    x = ed.sample(DiffusersDenoiser(dit, base), _latents() * float(sch.grid[0]), sch.grid, "dpmpp-2m", cond=lab)
    assert torch.allclose(sch.grid, ed.timesteps.flow_shift(STEPS, ed.process.Flow(), 3.0))
    assert _rel(lat, x) < 1e-5


def test_protocol_errors_and_generator_noise():
    unet_like = lambda x, t: x * 0.1   # noqa: E731  an eps model
    sch = EffdiffScheduler(solver="euler-ancestral")
    with pytest.raises(ValueError, match="set_timesteps"):
        sch.step(torch.zeros(1, 2), 0, torch.zeros(1, 2))

    def run(seed):
        sch.set_timesteps(5)
        lat, g = torch.ones(2, 3) * sch.init_noise_sigma, torch.Generator().manual_seed(seed)
        for t in sch.timesteps:
            lat = sch.step(unet_like(lat, t), t, lat, generator=g).prev_sample
        return lat
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="all 5 evaluations"):
        sch.step(torch.zeros(2, 3), sch.timesteps[-1], a)
    with pytest.raises(ValueError, match="does not start a step"):
        sch.set_timesteps(5)
        sch.step(torch.zeros(2, 3), 12345.0, a)
