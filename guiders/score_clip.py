"""Score clipping on a schedule (score debiasing, adapted to 2-D sampling).

Hong et al., "Debiasing Scores and Prompts of 2D Diffusion for View-consistent Text-to-3D Generation"
(NeurIPS 2023), sec. 4.1 and App. C.2: Clip(x, c) = max(min(x, c), -c) elementwise, with the threshold

    psi = (1 - tau) psi_start + tau psi_end,   tau = step / max_step     (SD 2.0 -> 8.0, DeepFloyd 0.5 -> 2.0)

In score distillation the clipped tensor is the score residual and step is the optimisation step.
ADAPTATION for 2-D sampling (there is no residual): the clipped tensor is the guidance term in eps
units, g = (D_guided - D_empty) / sigma (the guided minus the unconditional noise prediction), and tau
runs over the sampling steps, from the first (tau = 0) to the last (tau = 1), so the threshold still
starts tight and loosens. Measured on a Gaussian-mixture toy in scripts/score_clip_gmm.py.
"""
import torch

from .convert import sigma_like
from .technique import EMPTY, Wrapper


def clip_threshold(step: int, max_step: int, psi_start: float, psi_end: float) -> float:
    """psi at a step; max_step <= 0 means a single step (tau = 0)."""
    tau = min(max(step / max_step, 0.0), 1.0) if max_step > 0 else 0.0
    return (1.0 - tau) * psi_start + tau * psi_end


def clip_score(x: torch.Tensor, c) -> torch.Tensor:
    """Clip(x, c) = max(min(x, c), -c), elementwise; c is a number or broadcasts against x."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device).abs()
    return torch.maximum(torch.minimum(x, c), -c)


def step_of(sigma: float, sigmas) -> tuple:
    """(step, max_step) of a noise level in a sampling schedule sigma_0 > ... > sigma_n: step k is the last
    k with sigma_k >= sigma, so the extra evaluations of 2nd-order samplers count with their step."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    steps = max(len(s) - 2, 0)  # n + 1 sigmas: the model is evaluated at sigma_0 .. sigma_(n-1)
    level = float(torch.as_tensor(sigma).flatten()[0])
    k = int((s >= level * (1 - 1e-6)).sum()) - 1
    return min(max(k, 0), steps), steps


def clip_guidance_extra(d_pos, d_empty, extra, scale: float, sigma, psi: float):
    """Given what a guider adds to CFG (extra, may be None), the new extra such that the whole guidance
    term D_guided - D_empty is clipped to +-psi in eps units (|g| <= psi * sigma in D units)."""
    guidance = scale * (d_pos.float() - d_empty.float())
    if extra is not None:
        guidance = guidance + extra.float()
    clipped = clip_score(guidance, psi * sigma_like(sigma, d_pos))
    return (clipped - scale * (d_pos.float() - d_empty.float())).to(d_pos.dtype)


def scheduled_clip(d_pos, d_empty, extra, scale: float, sigma, sigmas, psi_start: float, psi_end: float):
    """clip_guidance_extra with psi taken from the schedule at this sigma's step of the sampling run."""
    psi = clip_threshold(*step_of(sigma, sigmas), psi_start, psi_end)
    return clip_guidance_extra(d_pos, d_empty, extra, scale, sigma, psi)


class ScoreClip(Wrapper):
    """Clips the whole guidance term of any technique (plain CFG included) on the schedule above. The step comes
    from the run's schedule the host passes with every evaluation; without one, every step counts as the first."""

    def __init__(self, inner, psi_start: float, psi_end: float):
        super().__init__(inner)
        for name, value in (("score_clip_start", psi_start), ("score_clip_end", psi_end)):
            if not 0 <= value < float("inf"):
                raise ValueError(f"{name}: {value} must be a finite number >= 0 (0 and 0 = off; the paper's SD values are 2 -> 8)")
        self.psi = (float(psi_start), float(psi_end))

    def conditions(self, step):
        return [EMPTY, *self.inner.conditions(step)]  # the guidance term is measured from D_empty, even at s = 1

    def term(self, step, d):
        sigmas = step.sigmas if step.sigmas is not None else torch.as_tensor(step.sigma).flatten()[:1]
        extra = self.inner.term(step, d)
        return scheduled_clip(d["positive"], d[EMPTY], extra, step.scale, step.sigma, sigmas, *self.psi).float()
