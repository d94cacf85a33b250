"""Analytic validation lab: isotropic Gaussian mixtures, whose denoisers and posteriors are exact.

Koulischer et al., "Dynamic Negative Guidance of Diffusion Models" (ICLR 2025), App. B (eq. 17)
and fig. 1 / fig. 3a: a mixture sum_k w_k N(mu_k, s_k^2 I) diffused in VE form stays a mixture,
p_sigma(x) = sum_k w_k N(x; mu_k, (s_k^2 + sigma^2) I), so

    P(k | x) = softmax_k(log w_k + log N(x; mu_k, (s_k^2 + sigma^2) I))
    D(x, sigma) = E[x0 | x] = sum_k P(k | x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k))

are exact. Flow (CONST) form x = (1 - sigma) x0 + sigma n is the VE form at x / (1 - sigma), sigma / (1 - sigma).
A few ComfyUI-shaped samplers (model(x, sigma) -> D over a sigma schedule ending in 0) let the pure tests
run without a host; scripts/dng_lab.py also drives ComfyUI's own k-diffusion samplers with these models.
Everything here is fp64.
"""
import math

import torch

from ..guiders.convert import eps_from_x0
from ..guiders.dng import transition
from ..guiders.technique import EMPTY, Run, Step, Technique, evaluated, guide, probed

F64 = torch.float64


class GaussianMixture:
    def __init__(self, means, stds, weights):
        self.means = torch.as_tensor(means, dtype=F64)
        k = self.means.shape[0]
        self.stds = torch.as_tensor(stds, dtype=F64).flatten().expand(k).clone()
        w = torch.as_tensor(weights, dtype=F64).flatten()
        self.weights = w / w.sum()

    def subset(self, idx) -> "GaussianMixture":
        """The mixture of some components, with their weights renormalised (a condition that picks modes)."""
        idx = list(idx)
        return GaussianMixture(self.means[idx], self.stds[idx], self.weights[idx])

    def _log_joint(self, x, sigma):
        """log w_k + log N(x; mu_k, (s_k^2 + sigma^2) I), shape [B, K]; sigma scalar or [B]."""
        var = self.stds ** 2 + _col(sigma, x) ** 2  # [B, K]
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        d = x.shape[1]
        return self.weights.log() - 0.5 * (sq / var + d * (2 * math.pi * var).log())

    def posterior(self, x, sigma) -> torch.Tensor:
        """P(component | x_sigma), shape [B, K]."""
        return torch.softmax(self._log_joint(x.to(F64), sigma), dim=1)

    def log_density(self, x, sigma) -> torch.Tensor:
        return torch.logsumexp(self._log_joint(x.to(F64), sigma), dim=1)

    def denoise(self, x, sigma) -> torch.Tensor:
        """Exact D(x, sigma) = E[x0 | x_sigma = x], VE form."""
        x = x.to(F64)
        post = self.posterior(x, sigma)
        shrink = self.stds ** 2 / (self.stds ** 2 + _col(sigma, x) ** 2)  # [B, K]
        comp = self.means[None] + shrink[..., None] * (x[:, None, :] - self.means[None])
        return (post[..., None] * comp).sum(1)

    def sample(self, n: int, generator=None):
        """n draws of x0 and their component labels."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], dtype=F64, generator=generator)
        return self.means[labels] + self.stds[labels, None] * noise, labels


def _col(sigma, x):
    s = torch.as_tensor(sigma, dtype=F64, device=x.device).flatten()
    return (s.expand(x.shape[0]) if s.numel() == 1 else s)[:, None]


def to_ve(x, sigma, kind: str):
    """The VE state and sigma equivalent to a sampler state (x, sigma) of the given kind."""
    s = torch.as_tensor(sigma, dtype=F64).flatten()
    if kind == "ve":
        return x.to(F64), s
    alpha = (1 - s).clamp_min(1e-12)
    return x.to(F64) / _col(alpha, x), s / alpha


def denoiser(gmm: GaussianMixture, kind: str = "ve"):
    """model(x, sigma) -> exact D in the sampler's own parameterisation (D is x0 in both kinds)."""
    return lambda x, sigma: gmm.denoise(*to_ve(x, sigma, kind))


def posterior_mass(gmm: GaussianMixture, idx, x, sigma, kind: str = "ve") -> torch.Tensor:
    """Exact P(component in idx | x_sigma), shape [B]."""
    return gmm.posterior(*to_ve(x, sigma, kind))[:, list(idx)].sum(1)


def karras_sigmas(n: int, sigma_min=0.02, sigma_max=20.0, rho=7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n, dtype=F64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=F64)])


def flow_sigmas(n: int, shift: float = 3.0) -> torch.Tensor:
    """A shifted linear flow schedule from 1 to 0, like ComfyUI's 'simple' on SD3/Flux-style models."""
    t = torch.linspace(1, 0, n + 1, dtype=F64)
    return shift * t / (1 + (shift - 1) * t)


def prior_noise(n: int, d: int, sigmas: torch.Tensor, generator=None) -> torch.Tensor:
    """The starting state sigma_max * noise: ComfyUI's noise_scaling on an empty latent, VE and flow alike."""
    return torch.randn(n, d, dtype=F64, generator=generator) * sigmas[0]


def sample_euler(model, x, sigmas, kind="ve", generator=None):
    for i in range(len(sigmas) - 1):
        x = x + eps_from_x0(x, model(x, sigmas[i]), sigmas[i]) * (sigmas[i + 1] - sigmas[i])
    return x


def sample_euler_ancestral(model, x, sigmas, kind="ve", generator=None, eta=1.0, s_noise=1.0):
    """eta = s_noise = 1: draws x_next ~ N(a x + k D, v), the transition guiders/dng.py tracks (RF form for flow).
    Otherwise k-diffusion's step: noise eta * sqrt(v) (VE; RF: its downstep ratio 1 + (sn / sp - 1) eta), times s_noise."""
    for i in range(len(sigmas) - 1):
        sp, sn = sigmas[i:i + 1], sigmas[i + 1:i + 2]
        d = model(x, sigmas[i])
        if sn == 0:
            return d
        if kind == "ve":
            up = (eta * transition(sp, sn, kind)[2].sqrt()).clamp_max(sn)
            down = (sn ** 2 - up ** 2).sqrt()
            x = x + (down - sp) / sp * (x - d)
        else:
            down = sn * (1 + (sn / sp - 1) * eta)
            scale = (1 - sn) / (1 - down)
            up = (sn ** 2 - (scale * down) ** 2).clamp_min(0).sqrt()
            x = scale * (down / sp * x + (1 - down / sp) * d)
        x = x + s_noise * up * torch.randn(x.shape, dtype=F64, generator=generator)
    return x


def sample_heun(model, x, sigmas, kind="ve", generator=None):
    for i in range(len(sigmas) - 1):
        d1 = eps_from_x0(x, model(x, sigmas[i]), sigmas[i])
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            return x + d1 * dt
        x2 = x + d1 * dt
        d2 = eps_from_x0(x2, model(x2, sigmas[i + 1]), sigmas[i + 1])
        x = x + (d1 + d2) / 2 * dt
    return x


def sample_dpmpp_2m(model, x, sigmas, kind="ve", generator=None):
    old = None
    for i in range(len(sigmas) - 1):
        d = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            return d
        h = sigmas[i].log() - sigmas[i + 1].log()
        dd = d
        if old is not None:
            r = (sigmas[i - 1].log() - sigmas[i].log()) / h
            dd = (1 + 1 / (2 * r)) * d - old / (2 * r)
        x = sigmas[i + 1] / sigmas[i] * x - torch.expm1(-h) * dd
        old = d
    return x


SAMPLERS = {"euler": sample_euler, "euler_ancestral": sample_euler_ancestral, "heun": sample_heun,
            "dpmpp_2m": sample_dpmpp_2m}


class Term(Technique):
    """A term given as a function fn(x, sigma, d_pos, d_empty, d_neg) of the prompts "positive", "empty" and
    "unwanted": the exact-posterior references the tests compare a technique with."""

    def __init__(self, fn):
        self.fn = fn

    def conditions(self, step):
        return [EMPTY, "unwanted"]

    def term(self, step, d):
        return self.fn(step.x, step.sigma, d["positive"], d[EMPTY], d["unwanted"])


def guided_model(technique, denoisers: dict, scale: float, sigmas, kind: str = "ve", on_eval=None):
    """A guided model(x, sigma) for the samplers that drives a technique the way the host adapter does: reset for
    the run, then per evaluation the prompts it asks for (technique.evaluated), its probe rows at x + offset, and
    guide(). denoisers maps prompt names ("positive", "empty", "unwanted", ...) to exact denoisers; on_eval(x, sigma)
    runs after each evaluation."""
    technique.reset(Run(torch.as_tensor(sigmas), kind, batch=None))

    def model(x, sigma):
        step = Step(x, torch.as_tensor(sigma), torch.as_tensor(sigmas), scale)
        d = {name: denoisers[name](x, sigma) for name in evaluated(technique, step)}
        probe = technique.probe(step)
        if probe is not None:
            d.update({probed(name): denoisers[name](x + probe.offset, sigma) for name in probe.names})
        out = guide(technique, step, d)
        if on_eval is not None:
            on_eval(x, sigma)
        return out

    return model
