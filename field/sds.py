"""Score distillation residual in eps units, for eps, v and flow (CONST) models.

Score distillation (Poole et al., DreamFusion, 2022) backpropagates g = w(t) (eps_hat - eps) into the rendered
latent x0; Score Jacobian Chaining (Wang et al. 2023) uses the same residual with w = 1. ComfyUI's models all
return a denoised prediction D (x0 units), and the sampler state is

    eps, v:  x = x0 + sigma n                 (VE form; sigma_ve = sigma)
    flow:    x = (1 - sigma) x0 + sigma n     (= (x0 + sigma_ve n) / (1 + sigma_ve),  sigma_ve = sigma / (1 - sigma))

The model's noise estimate is eps_hat = (x - D) / sigma for eps/v and (x - (1 - sigma) D) / sigma for flow, so in
both cases

    eps_hat - n = (x0 - D) / sigma_ve

whatever noise n was drawn: the residual depends on n only through D. Weighting: "sjc" w = 1 (SJC, D-SDS);
"dreamfusion" w = sigma_t^2 of the VP process = sigma_ve^2 / (1 + sigma_ve^2).

Score debiasing (Hong et al., "Debiasing Scores and Prompts of 2D Diffusion for View-consistent Text-to-3D
Generation", NeurIPS 2023, sec. 4.1) clips this residual elementwise to +-psi, psi linear from psi_start to psi_end
over the optimisation steps (guiders/score_clip.py holds the schedule and the clip). The view-dependent prompts and
the Perp-Neg negatives (Armandpour et al. 2023) enter through D, the guided prediction, not here.
"""
import torch

from ..guiders.score_clip import clip_score, clip_threshold
from ..guiders.convert import sigma_like

PREDICTIONS = ("eps", "v", "flow")
WEIGHTINGS = ("sjc", "dreamfusion")


def _check(prediction):
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: {prediction!r} is not one of {', '.join(PREDICTIONS)}")


def sigma_ve(sigma, prediction: str):
    """The VE-equivalent noise level (noise-to-signal ratio) of a model's sigma."""
    _check(prediction)
    return sigma / (1 - sigma) if prediction == "flow" else sigma


def noisy(x0, noise, sigma, prediction: str):
    """The state the model sees for clean x0 and noise at sigma (ComfyUI's noise_scaling)."""
    _check(prediction)
    s = sigma_like(sigma, x0).to(x0.dtype)
    return (1 - s) * x0 + s * noise if prediction == "flow" else x0 + s * noise


def eps_prediction(x, denoised, sigma, prediction: str):
    """The model's noise estimate from its state x and its denoised prediction D."""
    _check(prediction)
    s = sigma_like(sigma, x).to(x.dtype)
    return (x - (1 - s) * denoised) / s if prediction == "flow" else (x - denoised) / s


def residual(x0, denoised, sigma, prediction: str):
    """eps_hat - n = (x0 - D) / sigma_ve, [B, ...] (sigma: scalar or per sample)."""
    return (x0 - denoised) / sigma_like(sigma_ve(torch.as_tensor(sigma, dtype=torch.float64), prediction), x0).to(x0.dtype)


def weight(sig_ve, weighting: str = "sjc"):
    """w(sigma_ve): 1 (SJC / D-SDS) or sigma_ve^2 / (1 + sigma_ve^2) (DreamFusion's VP sigma_t^2)."""
    if weighting == "sjc":
        return torch.ones_like(torch.as_tensor(sig_ve, dtype=torch.float64))
    if weighting == "dreamfusion":
        s2 = torch.as_tensor(sig_ve, dtype=torch.float64) ** 2
        return s2 / (1 + s2)
    raise ValueError(f"weighting: {weighting!r} is not one of {', '.join(WEIGHTINGS)}")


def clip_residual(g, step: int, max_step: int, psi_start: float, psi_end: float):
    """D-SDS score clipping: Clip(g, psi), psi = (1 - tau) psi_start + tau psi_end, tau = step / max_step."""
    return clip_score(g, clip_threshold(step, max_step, psi_start, psi_end))


def sds_gradient(x0, denoised, sigma, prediction: str, weighting: str = "sjc", psi=None):
    """w(sigma) * Clip((x0 - D) / sigma_ve, psi): the gradient score distillation puts on the render x0.
    psi None = no clipping. Clipping acts on the residual in eps units, before the weighting, as in D-SDS."""
    g = residual(x0, denoised, sigma, prediction)
    if psi is not None:
        g = clip_score(g, psi)
    w = weight(sigma_ve(torch.as_tensor(sigma, dtype=torch.float64), prediction), weighting)
    return g * sigma_like(w, x0).to(x0.dtype)


def sds_loss(x0, g):
    """0.5 ||x0 - sg(x0 - g)||^2 per sample, [B]: its gradient with respect to x0 is exactly g."""
    return 0.5 * (x0 - (x0 - g).detach()).pow(2).flatten(1).sum(1)


def sample_t(batch: int, generator: torch.Generator, t_range=(0.02, 0.98)):
    """Diffusion times t in t_range, uniform (DreamFusion's U(0.02, 0.98)); 1 = pure noise. In ComfyUI,
    sigma = model_sampling.percent_to_sigma(1 - t)."""
    lo, hi = t_range
    return lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)
