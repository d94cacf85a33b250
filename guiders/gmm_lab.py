"""Analytic validation lab: isotropic Gaussian mixtures, whose denoisers and posteriors are exact.

SPEC 7 and Koulischer et al., "Dynamic Negative Guidance of Diffusion Models" (ICLR 2025), App. B (eq. 17)
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

from .dng import transition
from .vocab import eps_from_x0

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


def sample_euler_ancestral(model, x, sigmas, kind="ve", generator=None):
    """eta = 1: draws x_next ~ N(a x + k D, v), the transition guiders/dng.py tracks (RF form for flow)."""
    for i in range(len(sigmas) - 1):
        d = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            return d
        a, k, v = transition(sigmas[i:i + 1], sigmas[i + 1:i + 2], kind)
        x = a * x + k * d + v.sqrt() * torch.randn(x.shape, dtype=F64, generator=generator)
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


def guided_model(d_pos, d_empty, d_neg, scale: float, term, on_eval=None):
    """A guided model(x, sigma) for the samplers: D_empty + s (D_pos - D_empty) + term(x, sigma, D_pos, D_empty, D_neg).

    term is e.g. DynamicNegativeGuidance.extra (tracked posterior) or an exact-posterior version;
    on_eval(x, sigma) runs after it, for recording.
    """
    def model(x, sigma):
        p, e, n = d_pos(x, sigma), d_empty(x, sigma), d_neg(x, sigma)
        out = e + (p - e) * scale + term(x, sigma, p, e, n)
        if on_eval is not None:
            on_eval(x, sigma)
        return out

    return model
