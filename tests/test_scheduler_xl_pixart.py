"""EffdiffScheduler and effdiff.accelerate in SDXL- and PixArt-style pipelines, built offline from
configs (random weights, no downloads): the pipeline's latents equal ``ed.sample`` on
``DiffusersDenoiser`` with the same conditioning (SDXL's pooled text embeddings and time ids, PixArt's
T5 embeddings and attention mask) and guidance, and ``accelerate(...).remove()`` gives the original
output bit for bit."""
import string

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import effdiff as ed  # noqa: E402
from effdiff.denoisers import as_batch_sigma  # noqa: E402
from effdiff.hooks import hooks_of  # noqa: E402
from effdiff.integrations.accelerate import accelerate  # noqa: E402
from effdiff.integrations.diffusers import DiffusersDenoiser  # noqa: E402
from effdiff.integrations.scheduler import EffdiffScheduler  # noqa: E402
from tiny_pipelines import tiny_tokenizer  # noqa: E402

STEPS, SIZE, PROMPT = 4, 16, "a cat"
# (solver, schedule): DDIM, multistep DPM-Solver++ (2M, 3M on the Align-Your-Steps tables), UniPC, Heun (2 sub-steps)
RUNS = [("ddim", "trailing"), ("dpmpp-2m", "karras"), ("dpmpp-3m", "ays"), ("dpmpp-3m", "ays-sdxl"),
        ("unipc", "karras"), ("heun", "karras")]


def _vae():
    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                                   down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                   norm_num_groups=8, sample_size=SIZE).eval()


def tiny_sdxl(folder):
    """StableDiffusionXLPipeline: a text_time UNet (cross-attention on both encoders' 32 + 32
    features, pooled 32-d text embedding + 6 time ids), CLIPTextModel + CLIPTextModelWithProjection."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    torch.manual_seed(0)
    tok, tok2 = tiny_tokenizer(folder / "tokenizer"), tiny_tokenizer(folder / "tokenizer_2")
    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=16, projection_dim=32, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=64, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8, attention_head_dim=8,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8).eval()
    sched = diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                             steps_offset=1, timestep_spacing="leading")
    pipe = diffusers.StableDiffusionXLPipeline(vae=_vae(), text_encoder=CLIPTextModel(cfg).eval(),
                                               text_encoder_2=CLIPTextModelWithProjection(cfg).eval(), tokenizer=tok,
                                               tokenizer_2=tok2, unet=unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_t5_tokenizer():
    """A T5 tokenizer over single letters (pad 0, eos 1, unk 2), built from a tokenizers object."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{c: 3 + i for i, c in enumerate(string.ascii_lowercase)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("", "isolated")])
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                      special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tk, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0,
                           model_max_length=8)


def tiny_pixart():
    """PixArtAlphaPipeline: a 2-layer PixArtTransformer2DModel with learned-sigma output (8 = 2 x 4
    channels), a 2-layer T5 encoder, the DPMSolverMultistep config PixArt ships with."""
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(0)
    tok = tiny_t5_tokenizer()
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8)).eval()
    dit = diffusers.PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                             out_channels=8, num_layers=2, cross_attention_dim=16, sample_size=8,
                                             patch_size=2, caption_channels=32, norm_num_groups=8).eval()
    pipe = diffusers.PixArtAlphaPipeline(tokenizer=tok, text_encoder=t5, vae=_vae(), transformer=dit,
                                         scheduler=diffusers.DPMSolverMultistepScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    pipe = tiny_sdxl(tmp_path_factory.mktemp("sdxl"))
    emb, neg, pooled, neg_pooled = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                                      do_classifier_free_guidance=True)
    ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]], dtype=torch.float32)   # original size, crop, target size
    cond = {"encoder_hidden_states": emb, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": ids}}
    null = {"encoder_hidden_states": neg, "added_cond_kwargs": {"text_embeds": neg_pooled, "time_ids": ids}}
    return pipe, pipe.scheduler, cond, null


@pytest.fixture(scope="module")
def pixart():
    pipe = tiny_pixart()
    emb, mask, neg, neg_mask = pipe.encode_prompt(PROMPT, True, device="cpu", clean_caption=False,
                                                  max_sequence_length=8)
    return (pipe, pipe.scheduler, {"encoder_hidden_states": emb, "encoder_attention_mask": mask},
            {"encoder_hidden_states": neg, "encoder_attention_mask": neg_mask})


def _call(pipe, **kw):
    if isinstance(pipe, diffusers.PixArtAlphaPipeline):
        kw.update(clean_caption=False, max_sequence_length=8, use_resolution_binning=False)
    return pipe(PROMPT, height=SIZE, width=SIZE, **kw).images


def _latents(seed=0):
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _check_equal_to_ed_sample(fixture, solver, schedule, guidance):
    pipe, base, cond, null = fixture
    pipe.scheduler = EffdiffScheduler.from_config(base.config, solver=solver, schedule=schedule, seed=3)
    try:
        out = _call(pipe, num_inference_steps=STEPS, latents=_latents(), output_type="latent", guidance_scale=guidance)
        grid, evals = pipe.scheduler.grid, len(pipe.scheduler.timesteps)
    finally:
        pipe.scheduler = base
    model = getattr(pipe, "unet", None) or pipe.transformer
    den = DiffusersDenoiser(model, base)
    if guidance == 1.0:
        res = ed.sample(den, _latents() * float(grid[0]), grid, solver, cond=cond, seed=3, return_info=True)
    else:
        res = ed.sample(ed.CFG(den, guidance, null_cond=null), _latents() * float(grid[0]), grid, solver,
                        cond=cond, seed=3, return_info=True)   # ed.CFG batches [cond; null], the pipeline [null; cond]
    assert evals == res.nfe                                       # one model call per evaluation
    assert _rel(out, res.x) < 1e-5


@pytest.mark.parametrize("solver,schedule", RUNS)
def test_sdxl_pipeline_equals_ed_sample(sdxl, solver, schedule):
    """SDXL: added_cond_kwargs (pooled text embeds, time ids) reach the UNet through cond."""
    _check_equal_to_ed_sample(sdxl, solver, schedule, guidance=3.0)


@pytest.mark.parametrize("solver,schedule", RUNS)
def test_pixart_pipeline_equals_ed_sample(pixart, solver, schedule):
    """PixArt: timesteps as a (B,) tensor, T5 attention mask, learned-sigma channels dropped."""
    _check_equal_to_ed_sample(pixart, solver, schedule, guidance=3.0)


@pytest.mark.parametrize("which", ["sdxl", "pixart"])
def test_unguided_dict_cond_through_ed_sample(which, request):
    """Without guidance, ed.sample takes the conditioning dict itself as cond."""
    _check_equal_to_ed_sample(request.getfixturevalue(which), "dpmpp-3m", "ays", guidance=1.0)


def test_pixart_one_step_reads_pred_original_sample(pixart):
    """PixArt at one inference step takes step(...)[1], the x0 prediction."""
    pipe, base, cond, null = pixart
    pipe.scheduler = EffdiffScheduler.from_config(base.config, solver="dpmpp-2m", schedule="karras")
    try:
        out = _call(pipe, num_inference_steps=1, latents=_latents(), output_type="latent", guidance_scale=3.0)
        grid = pipe.scheduler.grid
    finally:
        pipe.scheduler = base
    D = ed.CFG(DiffusersDenoiser(pipe.transformer, base), 3.0, null_cond=null)
    with torch.no_grad():
        ref = D(_latents() * float(grid[0]), grid[:1], cond)
    assert len(grid) == 2 and _rel(out, ref) < 1e-5


def test_dict_cond_errors(pixart):
    with pytest.raises(ValueError, match="a dict cond needs null_cond"):
        ed.CFG(DiffusersDenoiser(pixart[0].transformer, pixart[1]), 3.0)(_latents(), torch.tensor([1.0]), pixart[2])
    den = DiffusersDenoiser(pixart[0].transformer, pixart[1])
    with pytest.raises(ValueError, match=r"\['prompt_embeds'\] are not arguments of PixArtTransformer2DModel"):
        den(_latents(), torch.tensor([1.0]), {"prompt_embeds": pixart[2]["encoder_hidden_states"]})


def _pristine(model):
    return all("forward" not in m.__dict__ and not hooks_of(m) for m in model.modules())


def _run(pipe, steps=STEPS):
    return _call(pipe, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np",
                 guidance_scale=2.0)


@pytest.mark.parametrize("which,cache,solver,schedule", [("sdxl", "deepcache", "dpmpp-2m", "karras"),
                                                         ("pixart", "fora", "dpmpp-3m", "ays")])
def test_accelerate_then_remove_is_bit_exact(which, cache, solver, schedule, request):
    pipe, base = request.getfixturevalue(which)[:2]
    model = getattr(pipe, "unet", None) or pipe.transformer
    ref, config = _run(pipe), dict(pipe.config)
    with accelerate(pipe, solver=solver, steps=6, schedule=schedule):
        plain = _run(pipe)
    with accelerate(pipe, solver=solver, steps=6, schedule=schedule, cache=(cache, {"interval": 1})) as h:
        exact = _run(pipe)                         # interval 1 computes everything: the solver alone, bit for bit
        assert h.stats[cache].reused == 0 and h.stats[cache].computed > 0
    with accelerate(pipe, solver=solver, steps=6, schedule=schedule, cache=(cache, {"interval": 3})) as h:
        assert isinstance(pipe.scheduler, EffdiffScheduler) and h.scheduler.config.solver == solver
        fast = _run(pipe)
        st = h.stats[cache]
        assert 2 * st.computed == st.reused > 0     # full steps 0 and 3 of 6, reuse at the other 4
    assert (plain == exact).all() and 0 < abs(fast - plain).max()
    assert pipe.scheduler is base and dict(pipe.config) == config and _pristine(model)
    assert (_run(pipe) == ref).all()


def test_dict_cond_in_parallel_samplers_and_batch_checks():
    """A dict condition is tiled leaf by leaf for parallel-in-time windows and batch-checked per leaf."""
    net = lambda x, s, cond: x * cond["scale"].reshape(-1, 1, 1, 1) / (1 + s.reshape(-1, 1, 1, 1) ** 2)
    cond = {"scale": torch.linspace(0.5, 1.0, 3), "extra": {"ids": torch.arange(3)}}
    x = torch.randn(3, 1, 4, 4)
    sig = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    seq = ed.sample(net, x * 5, sig, "ddim", cond=cond)
    par = ed.sample(net, x * 5, sig, "paradigms", cond=cond)
    assert torch.allclose(par, seq, atol=1e-4)
    with pytest.raises(ValueError, match="cond has batch 2 but x has batch 3"):
        ed.sample(net, x * 5, sig, "ddim", cond={"scale": torch.ones(2)})
