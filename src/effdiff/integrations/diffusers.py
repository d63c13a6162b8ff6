"""diffusers models under effdiff's contract (``pip install effdiff[diffusers]``).

``DiffusersDenoiser`` turns a diffusers ``UNet2DConditionModel`` or 2-D transformer
(``DiTTransformer2DModel``, ...) plus its scheduler config into ``D(x, sigma, cond)``: the
scheduler's training process becomes an effdiff ``Process`` (DDPM-family betas -> discrete
VP, flow matching -> ``Flow``) and its prediction type one of effdiff's wrappers, so every
solver, schedule and cache in effdiff runs on it. ``cond`` is ``encoder_hidden_states`` for
cross-attention models and class labels for class-conditional DiTs, or a dict of the model's own
keywords for richer conditioning: SDXL's ``{"encoder_hidden_states": e, "added_cond_kwargs":
{"text_embeds": pooled, "time_ids": ids}}``, PixArt's ``{"encoder_hidden_states": e,
"encoder_attention_mask": mask}``.

Feature caches attach to the diffusers modules through effdiff's hook registry:
``apply_deepcache`` caches ``down_blocks[i > b]``, ``mid_block`` and the mirrored
``up_blocks`` (Ma et al. 2024); ``effdiff.caching.apply_fora`` works as is on
``transformer_blocks[i].attn1`` / ``.ff`` (Selvaraju et al. 2024).
"""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import torch

from ..denoisers import PREDICTIONS, Denoiser, append_dims, as_batch_sigma
from ..process import VP, Flow, Process

Tensor = torch.Tensor

_PREDICTION = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow_prediction": "velocity"}


def process_from_scheduler(config) -> tuple[Process, str | None]:
    """(process, prediction) from a diffusers scheduler, its config (dict) or an effdiff
    ``Process`` (prediction None then). DDPM-family betas ("linear", "scaled_linear",
    "squaredcos_cap_v2", trained_betas) give a discrete VP; ``FlowMatch*`` schedulers give
    ``Flow`` with velocity prediction."""
    if isinstance(config, Process):
        return config, None
    cfg = dict(getattr(config, "config", config) or {})
    if "FlowMatch" in cfg.get("_class_name", type(config).__name__):
        return Flow(), "velocity"
    if cfg.get("rescale_betas_zero_snr"):
        raise ValueError("rescale_betas_zero_snr gives σ = inf at the last training step; not supported")
    n = int(cfg.get("num_train_timesteps", 1000))
    b0, b1 = float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02))
    kind = cfg.get("beta_schedule", "linear")
    if cfg.get("trained_betas") is not None:
        proc = VP(betas=cfg["trained_betas"])
    elif kind == "linear":
        proc = VP("linear", num_steps=n, beta_start=b0, beta_end=b1)
    elif kind == "scaled_linear":   # latent diffusion: linear in sqrt(beta)
        proc = VP(betas=torch.linspace(b0 ** 0.5, b1 ** 0.5, n, dtype=torch.float64) ** 2)
    elif kind == "squaredcos_cap_v2":
        proc = VP("cosine", num_steps=n)
    else:
        raise ValueError(f"unsupported beta_schedule {kind!r}; known: linear, scaled_linear, squaredcos_cap_v2")
    return proc, _PREDICTION.get(cfg.get("prediction_type", "epsilon"))


class DiffusersDenoiser(Denoiser):
    """A diffusers UNet / transformer as ``D(x, sigma, cond) -> x0``.

    model: ``UNet2DConditionModel`` (SD, SDXL), ``DiTTransformer2DModel``,
    ``PixArtTransformer2DModel`` or any diffusers model called as ``model(sample, timestep=,
    encoder_hidden_states= | class_labels=, return_dict=False)``. scheduler: its scheduler (or
    config dict, or an effdiff ``Process``). prediction: eps, v, x0, velocity; default from the
    scheduler's ``prediction_type``. ``cond``: a tensor (``encoder_hidden_states`` or class
    labels) or a dict of model keywords (tensors moved to x's device, floating ones to the
    model's dtype; nested dicts such as ``added_cond_kwargs`` too). Learned-variance output
    channels (DiT, PixArt: 2C) are dropped. ``.net`` is the diffusers model itself, so effdiff's
    caches find its blocks.
    """

    def __init__(self, model, scheduler=None, prediction: str | None = None):
        process, pred = process_from_scheduler(scheduler)
        params = inspect.signature(model.forward).parameters
        self.keywords = None if any(p.kind is p.VAR_KEYWORD for p in params.values()) else set(params)
        self.cond_kw = next((k for k in ("encoder_hidden_states", "class_labels") if k in params), None)
        # timestep positionally where it is second (UNet, DiT: wrappers such as upstream DeepCache read args[1]),
        # by keyword elsewhere (PixArt: (hidden_states, encoder_hidden_states, timestep))
        self.time_by_keyword = "timestep" in list(params)[2:]
        classes = 0
        if self.cond_kw == "class_labels":   # DiT: label num_embeds_ada_norm is the null class
            classes = int(getattr(model.config, "num_embeds_ada_norm", 0) or 0)
        super().__init__(model, process, prediction or pred or "eps", num_classes=classes)

    def _cast(self, v, x: Tensor):
        """A conditioning value on x's device; floating tensors in the model's dtype."""
        if isinstance(v, dict):
            return {k: self._cast(u, x) for k, u in v.items()}
        if not torch.is_tensor(v):
            return v
        return v.to(device=x.device, dtype=self.net.dtype if v.is_floating_point() else v.dtype)

    def _cond(self, cond, x: Tensor) -> dict:
        """The model's conditioning keywords from ``cond``."""
        if isinstance(cond, dict):
            bad = sorted(set(cond) - self.keywords) if self.keywords is not None else []
            if bad:
                raise ValueError(f"cond keys {bad} are not arguments of {type(self.net).__name__}.forward")
            kw = {k: self._cast(v, x) for k, v in cond.items()}
            if self.cond_kw == "class_labels" and "class_labels" in kw:
                kw["class_labels"] = self.labels(kw["class_labels"], x.shape[0], x.device)
            return kw
        if self.cond_kw == "class_labels":
            return {"class_labels": self.labels(cond, x.shape[0], x.device)}
        if self.cond_kw == "encoder_hidden_states":
            if cond is None:
                raise ValueError("this model needs cond = encoder_hidden_states [B, L, D] or a dict of its keywords "
                                 "(an unconditional one: the embedding of the empty prompt)")
            return {"encoder_hidden_states": self._cast(torch.as_tensor(cond), x)}
        return {}

    def forward(self, x: Tensor, sigma, cond=None) -> Tensor:
        xn, timestep, coefs = model_input(self, x, sigma)
        kw = self._cond(cond, x)
        dtype = self.net.dtype
        xn_, timestep = xn.to(dtype), timestep.to(dtype=dtype, device=x.device)
        if self.time_by_keyword:
            out = self.net(xn_, timestep=timestep, return_dict=False, **kw)[0]
        else:
            out = self.net(xn_, timestep, return_dict=False, **kw)[0]
        return to_x0(self, out, x, xn, coefs)


class Parameterization:
    """A training ``process`` and a ``prediction`` type without a network: what a pipeline's
    latents are (``x_t = alpha x``), the time the network is told, and network output -> x0."""

    def __init__(self, process: Process, prediction: str = "eps"):
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")
        self.process, self.prediction = process, prediction

    coefficients = Denoiser.coefficients    # one copy of the math: (t, a, b, da, db) for σ [B]


def model_input(p, x: Tensor, sigma):
    """(network input ``alpha x``, its time ``c_noise(t)`` [B] float64, the broadcast
    coefficients) for VE-form ``x`` at ``sigma``; ``p`` has ``process`` / ``prediction``."""
    sigma = as_batch_sigma(sigma, x)
    t, a, b, da, db = p.coefficients(sigma)
    coefs = tuple(append_dims(v.to(x.dtype), x) for v in (a, b, da, db, sigma.double()))
    return coefs[0] * x, p.process.c_noise(t), coefs


def to_x0(p, out: Tensor, x: Tensor, xn: Tensor, coefs) -> Tensor:
    """x0 from the network output (learned-variance channels beyond x's dropped)."""
    out = out[:, : x.shape[1]].to(x.dtype)
    return PREDICTIONS[p.prediction](out, x, xn, *coefs)


def diffusers_unet(model):
    """The ``UNet2DConditionModel``-like network inside ``model`` (a denoiser or the model)."""
    net = getattr(model, "net", model)
    for attr in ("down_blocks", "mid_block", "up_blocks"):
        if getattr(net, attr, None) is None:
            raise TypeError(f"DeepCache on diffusers needs a UNet with down_blocks/mid_block/up_blocks; "
                            f"{type(net).__name__} has no {attr!r}")
    return net


def apply_deepcache(model, config=None):
    """DeepCache (Ma et al. 2024) on a diffusers UNet: the generic ``apply_deepcache`` over the
    UNet's ``down_blocks`` / ``mid_block`` / ``up_blocks`` seen as ADM's input / middle / output
    blocks. Branch b keeps ``down_blocks[:b + 1]`` and the mirrored ``up_blocks[-(b + 1):]`` live;
    cached down blocks return their ``(hidden, res_samples)`` tuple as computed at the last full
    step. Upstream DeepCache's ``DeepCacheSDHelper`` with ``cache_branch_id = 3 b + layers_per_block``
    (only block b's downsampler cached, whose output feeds cached blocks alone) gives the same
    output; its ``cache_branch_id = 0`` caches finer, inside the last up block."""
    from ..caching.deepcache import apply_deepcache as generic
    unet = diffusers_unet(model)
    return generic(SimpleNamespace(input_blocks=unet.down_blocks, middle_block=unet.mid_block,
                                   output_blocks=unet.up_blocks), config)
