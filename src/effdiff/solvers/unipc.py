"""UniPC (Zhao et al. 2023): a unified predictor (UniP) and corrector (UniC) for multistep
exponential integrators, here in data prediction (D) with the B(h) coefficients.

A step from σ to σ' (λ = -log σ, h = λ' - λ) starts from the DPM-Solver++ first-order step
x̃ = σ'/σ x + (1 - e^{-h}) m_0 and adds -B(h) Σ_k ρ_k D_k, where D_k = (m_{-k} - m_0) / r_k are
scaled differences to earlier outputs m_{-k} at r_k = (λ_{-k} - λ) / h, and ρ solves
Σ_k ρ_k r_k^{i-1} = b_i = i! (-h) φ_{i+1}(-h) / B(h). UniP-p uses the p - 1 earlier outputs
(order p); UniC-p also uses the output at the predicted point (r = 1), which the next step
evaluates anyway, and so raises the order to p + 1 at no extra evaluation.
B(h) = -h ("bh1") or e^{-h} - 1 ("bh2"), in the reference code's sign convention.

Registered names (options ``order`` 1-3, ``variant`` "bh1" | "bh2", ``corrector`` bool,
``predictor`` "unip" | "dpmpp", ``lower_order_final`` bool):

    unipc          UniPC-3, bh2, with corrector (the paper's unconditional setting; the paper
                   and diffusers use order 2 for guided sampling: pass order=2 or use unipc-2)
    unipc-1/-2/-3  UniPC-p, bh2, with corrector (order p + 1)
    dpmpp-2m-unic  DPM-Solver++(2M) predictor + UniC-2 (order 3), the same ``unic_correct``
    dpmpp-3m-unic  DPM-Solver++(3M) predictor + UniC-3 (order 4)

As in the reference code: the corrector of the step that lands on σ_i uses that step's
predictor order and the evaluation at σ_i, which stays in the history uncorrected; it is not
applied after the final step (the final step to σ=0 returns the data prediction);
UniP-2 uses ρ = 1/2 (so UniP-2 with bh2 is DPM-Solver++(2M) exactly) and UniC-1 uses ρ = 1/2;
the warm-up is that of ``dpm_solver.multistep``, and lower_order_final (default True) caps
step i of n at order n - i for every n, as the UniPC reference code and diffusers'
UniPCMultistepScheduler do (DPM-Solver's multistep does so only below 15 steps).
Where ρ comes from the full solve, B(h) cancels: bh1 and bh2 differ only in UniP-2 and UniC-1
steps. UniP-3 is the same extrapolation as dpmpp-3m, so dpmpp-2m-unic / dpmpp-3m-unic equal
unipc-2 / unipc-3 (bh2) to rounding; they exist to show UniC working after another predictor.
"""
from __future__ import annotations

import math
from functools import partial

import torch

from . import register
from .dpm_solver import check_options, exp_step, multistep, multistep_update, phi

VARIANTS = ("bh1", "bh2")
PREDICTORS = ("unip", "dpmpp")


def _b(h: float, order: int, variant: str) -> tuple[float, list[float]]:
    """B(h) and b_i = i! (-h) φ_{i+1}(-h) / B(h), i = 1..order (Zhao et al. 2023, Sec. 3)."""
    hh = -h
    B = hh if variant == "bh1" else math.expm1(hh)
    return B, [math.factorial(i) * hh * phi(i + 1, hh) / B for i in range(1, order + 1)]


def _rhos(rks: list[float], b: list[float]) -> list[float]:
    """ρ solving Σ_k ρ_k r_k^{i-1} = b_i, i = 1..len(rks), in float64."""
    R = torch.tensor([[r ** i for r in rks] for i in range(len(rks))], dtype=torch.float64)
    return torch.linalg.solve(R, torch.tensor(b[:len(rks)], dtype=torch.float64)).tolist()


def _differences(ms, hist, h: float, p: int):
    """r_k and D_k = (m_{-k} - m_0) / r_k for the p - 1 outputs before the current one."""
    rks, ds = [], []
    for k in range(1, p):
        r = (math.log(hist[-1]) - math.log(hist[-1 - k])) / h
        rks.append(r)
        ds.append((ms[-1 - k] - ms[-1]) / r)
    return rks, ds


def unip_predict(x, ms, hist, sigma_next: float, order: int, variant: str = "bh2"):
    """UniP-p (Zhao et al. 2023, Sec. 3.2, B(h) form): order-p prediction at σ' > 0 from the
    last ``order`` data predictions ``ms`` at σ's ``hist`` (last = current σ, where x is)."""
    sigma = hist[-1]
    h = math.log(sigma) - math.log(sigma_next)
    x_t = exp_step(x, sigma, sigma_next, [ms[-1]], "data")
    rks, ds = _differences(ms, hist, h, order)
    if not ds:
        return x_t
    B, b = _b(h, order, variant)
    rho = [0.5] if order == 2 else _rhos(rks, b)
    return x_t - sum(d * r for d, r in zip(ds, rho)) * B


def unic_correct(x, ms, hist, m_next, sigma_next: float, order: int, variant: str = "bh2"):
    """UniC-p (Zhao et al. 2023, Sec. 3.1, B(h) form): the corrected state at σ' from the state
    x at σ = hist[-1] that the last predictor started from, its history (``ms`` at ``hist``,
    ``order`` entries used) and the model output ``m_next`` at the predicted point. Works
    after any order-p predictor and gives order p + 1."""
    sigma = hist[-1]
    h = math.log(sigma) - math.log(sigma_next)
    rks, ds = _differences(ms, hist, h, order)
    B, b = _b(h, order, variant)
    rho = [0.5] if order == 1 else _rhos(rks + [1.0], b)
    res = sum(d * r for d, r in zip(ds, rho[:-1])) + (m_next - ms[-1]) * rho[-1]
    return exp_step(x, sigma, sigma_next, [ms[-1]], "data") - res * B


@register("unipc", order=3)
@register("unipc-1", order=1)
@register("unipc-2", order=2)
@register("unipc-3", order=3)
@register("dpmpp-2m-unic", order=2, predictor="dpmpp")
@register("dpmpp-3m-unic", order=3, predictor="dpmpp")
def unipc(denoiser, x, step, state=None, *, order: int = 3, variant: str = "bh2",
          corrector: bool = True, predictor: str = "unip", lower_order_final: bool = True):
    """UniPC-p (Zhao et al. 2023, Sec. 3): multistep UniP-p predictor (or DPM-Solver++(pM))
    with the UniC-p corrector, data prediction, one evaluation per step."""
    check_options(order)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if not isinstance(corrector, bool):
        raise ValueError(f"corrector must be True or False, got {corrector!r}")
    if predictor == "unip":
        update = partial(unip_predict, variant=variant)
    else:
        update = partial(multistep_update, prediction="data")
    correct = partial(unic_correct, variant=variant) if corrector else None
    return multistep(denoiser, x, step, state, update, order=order, prediction="data",
                     lower_order_final=lower_order_final, lower_order_below=math.inf, correct=correct)
