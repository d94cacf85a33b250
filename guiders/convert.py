"""The one place where x0 / eps / score conversions and per-sample reductions live (the pack's vocabulary).

ComfyUI guiders exchange denoised predictions D (x0). For eps/v models the sampler state is
x = x0 + sigma * n, so eps = (x - D) / sigma and score = (D - x) / sigma^2. Differences between two
conditions are linear in D, which is why the guidance formulas here work on D directly.
"""
import torch

TINY = 1e-12  # below this squared norm a direction counts as zero (fp32 reductions)


def sigma_like(sigma, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample sigma (scalar or shape [B]) against x of shape [B, ...]."""
    s = torch.as_tensor(sigma, device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    return s.reshape(-1, *([1] * (x.ndim - 1)))


def eps_from_x0(x, x0, sigma):
    return (x - x0) / sigma_like(sigma, x).to(x.dtype)


def x0_from_eps(x, eps, sigma):
    return x - eps * sigma_like(sigma, x).to(x.dtype)


def score_from_x0(x, x0, sigma):
    s = sigma_like(sigma, x).to(x.dtype)
    return (x0 - x) / (s * s)


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a, b> per sample over all non-batch dims, in fp32. Shape [B]."""
    return (a.float() * b.float()).flatten(1).sum(dim=1)


def per_sample(value, x: torch.Tensor) -> torch.Tensor:
    """A scalar, or one value per batch element, as fp32 shape [B, 1, 1, ...] on x's device."""
    v = torch.as_tensor(value, dtype=torch.float32, device=x.device).flatten()
    if v.numel() == 1:
        v = v.expand(x.shape[0])
    elif v.numel() != x.shape[0]:
        raise ValueError(f"got {v.numel()} per-sample values for a batch of {x.shape[0]}: give one value or one per batch element")
    return v.reshape(-1, *([1] * (x.ndim - 1)))
