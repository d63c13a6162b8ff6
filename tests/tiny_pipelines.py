"""Tiny diffusers pipelines built offline from configs with random weights (no downloads): a
StableDiffusion-style pipeline (UNet2DConditionModel, AutoencoderKL, a 2-layer CLIP text model
and a CLIP tokenizer over a 30-token vocabulary) and a DiT pipeline."""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def tiny_tokenizer(folder: Path):
    """A CLIP BPE tokenizer whose vocabulary is the lower-case letters (word-final and not) and
    the two special tokens; no merges."""
    from transformers import CLIPTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_sd(folder: Path, scheduler=None):
    """StableDiffusionPipeline with 8x8 latents (16x16 images), random init, seed 0."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    tok = tiny_tokenizer(folder / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=16,
                                        projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8, attention_head_dim=8).eval()
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  norm_num_groups=8, sample_size=16).eval()
    scheduler = scheduler or diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                     beta_end=0.012, steps_offset=1, clip_sample=False)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=scheduler,
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_dit():
    """DiTPipeline (class-conditional, learned-sigma output channels) with 8x8 latents."""
    import diffusers
    torch.manual_seed(0)
    dit = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4,
                                          out_channels=8, num_layers=2, sample_size=8, patch_size=2,
                                          norm_num_groups=8, num_embeds_ada_norm=10).eval()
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  norm_num_groups=8, sample_size=16).eval()
    pipe = diffusers.DiTPipeline(transformer=dit, vae=vae, scheduler=diffusers.DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe
