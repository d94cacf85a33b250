"""DNG: dynamic negative guidance.

Koulischer et al., "Dynamic Negative Guidance of Diffusion Models" (ICLR 2025), eq. 10 and Alg. 1-2:
the negative scale follows the posterior p = P(c- | x_t) of the unwanted concept, one scalar per sample,

    lambda(x_t) = lambda0 * p / (1 - p)

and p is tracked with Bayes' rule from one evaluation to the next. Text-to-image form (sec. 4.2 puts the
positive model where the unconditional one was; the combination itself is a DECISION, see SPEC 4):

    D = D_empty + s * (D_pos - D_empty) - lambda * (D_neg - D_pos)

With the exact posterior and s = 1 this is CFG toward "positive but not c-" at scale lambda0 (App. B,
eq. 17); lambda0 = 1 samples the remaining modes exactly (tests/core/test_dng.py proves it on mixtures).

Posterior update between two evaluations sigma_prev > sigma_now, ancestral transition N(a x_prev + k D_c, v):
    VE (eps/v models, x = x0 + sigma n): r = sigma_now^2 / sigma_prev^2, a = r, k = 1 - r, v = sigma_now^2 (1 - r)
    CONST (flow models, x = (1 - sigma) x0 + sigma n), from ComfyUI's RF ancestral step at eta 1:
        sd = sigma_now^2 / sigma_prev, c = (1 - sigma_now) / (1 - sd),
        a = c sd / sigma_prev, k = c (1 - sd / sigma_prev), v = sigma_now^2 - (c sd)^2
    log p += (-tau * (||x - mu_neg||^2 - ||x - mu_pos||^2) + delta) / (2 v), then p is clamped to [p_min, p_max].
Unlike the reference code, delta (its "offset") is really used, and v is the sampler's own transition variance.
"""
import math

import torch

from .perp_neg import perpendicular
from .vocab import batch_dot, per_sample

KINDS = ("ve", "const")
N_REF = 4 * 64 * 64  # per-element mode rescales squared norms to this size: an SD 512 px latent
SIGMA_RTOL = 1e-5  # sigmas this close count as the same level (heun and friends re-evaluate a level)


def check_kind(kind: str):
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: use one of {KINDS}")


def transition(sigma_prev: torch.Tensor, sigma_now: torch.Tensor, kind: str = "ve"):
    """(a, k, v) of the ancestral reverse transition x_now ~ N(a x_prev + k D(x_prev), v), fp64, per sample."""
    sp, sn = sigma_prev.double(), sigma_now.double()
    if kind == "ve":
        r = (sn / sp) ** 2
        return r, 1 - r, sn * sn * (1 - r)
    if kind == "const":
        sd = sn * sn / sp
        c = (1 - sn) / (1 - sd)
        return c * sd / sp, c * (1 - sd / sp), sn * sn - (c * sd) ** 2
    raise ValueError(f"kind {kind!r}: use one of {KINDS}")


def log_evidence(x_prev, d_neg, d_pos, x_now, sigma_prev, sigma_now, tau: float, delta: float,
                 kind: str = "ve", per_element: bool = False) -> torch.Tensor:
    """log p_now - log p_prev for one transition, shape [B], fp32, always finite.

    ||x - mu_neg||^2 - ||x - mu_pos||^2 is computed as <mu_pos - mu_neg, 2x - mu_neg - mu_pos> so two large,
    nearly equal norms never get subtracted. per_element rescales it by N_REF / (elements per sample).
    A transition that is not a step down (sigma_now >= sigma_prev or sigma_now <= 0) carries no evidence.
    """
    a, k, v = transition(sigma_prev, sigma_now, kind)  # fp64 on the CPU; the device only sees fp32 (MPS has no fp64)
    valid = ((sigma_now > 0) & (sigma_now < sigma_prev) & (v > 0)).to(x_now.device)
    a32, k32 = per_sample(a.float(), x_now), per_sample(k.float(), x_now)
    gap = k32 * (d_pos.float() - d_neg.float())
    centre = 2 * (x_now.float() - a32 * x_prev.float()) - k32 * (d_neg.float() + d_pos.float())
    dist = batch_dot(gap, centre)
    if per_element:
        dist = dist * (N_REF / x_now[0].numel())
    v32 = v.float().clamp_min(1e-30).to(x_now.device)
    inc = torch.where(valid, (-tau * dist + delta) / (2 * v32), torch.zeros_like(dist))
    return torch.nan_to_num(inc, nan=0.0, posinf=1e4, neginf=-1e4)  # clamping p absorbs +-1e4


def dng_scale(log_p: torch.Tensor, lambda0: float) -> torch.Tensor:
    """lambda = lambda0 * p / (1 - p) from log p. 1 - p = -expm1(log p) stays exact in fp32 where p itself
    would round to 1, so lambda is finite for every p_max < 1."""
    log_p = log_p.float()
    return lambda0 * log_p.exp() / (-torch.expm1(log_p)).clamp_min(1e-30)


def dng_extra(d_pos, d_empty, d_neg, lam, perp: bool = False) -> torch.Tensor:
    """What DNG adds to CFG: -lambda * (D_neg - D_pos), optionally only its part perpendicular to
    D_pos - D_empty (DNG x Perp-Neg). lam is a scalar or one value per sample. In d_pos's dtype."""
    e = d_neg.float() - d_pos.float()
    if perp:
        e = perpendicular(e, d_pos.float() - d_empty.float())
    return (-per_sample(lam, d_pos) * e).to(d_pos.dtype)


def dng(d_pos, d_empty, d_neg, lam, scale: float, perp: bool = False) -> torch.Tensor:
    """The guided denoised prediction D, in d_pos's dtype."""
    return d_empty + (d_pos - d_empty) * scale + dng_extra(d_pos, d_empty, d_neg, lam, perp)


def check_settings(prior: float, p_min: float, p_max: float, lambda0: float = 0.0, tau: float = 1.0,
                   delta: float = 0.0, kind: str = "ve"):
    """ValueError naming the bad input. A prior outside [p_min, p_max] is allowed: it gets clamped."""
    for name, value in (("prior", prior), ("p_min", p_min), ("p_max", p_max), ("lambda0", lambda0),
                        ("tau", tau), ("delta", delta)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: {value!r} is not a finite number")
    if not 0 < prior < 1:
        raise ValueError(f"prior: {prior} must be strictly between 0 and 1 (it is a probability; the paper uses 0.01)")
    if not 0 < p_min < p_max < 1:
        raise ValueError(f"p_min/p_max: need 0 < p_min < p_max < 1, got p_min={p_min}, p_max={p_max} "
                         "(defaults 1e-6 and 0.99)")
    if lambda0 < 0:
        raise ValueError(f"lambda0: {lambda0} must be >= 0 (0 turns DNG into plain CFG)")
    if tau < 0:
        raise ValueError(f"tau: {tau} must be >= 0 (it is a temperature on the evidence; 1 = exact Bayes)")
    check_kind(kind)


class PosteriorTracker:
    """p = P(c- | x_t) per sample, updated from consecutive evaluations. Call reset() before every run.

    Sampler-agnostic rule (DECISION, measured in docs/dng.md): every evaluation is filed under its
    sigma level. A lower sigma opens a new level: p is updated from the previous level's LAST evaluation.
    The same sigma again (heun's corrector, restarts) recomputes the current level's p from the previous
    level with the newer x, so the posterior always follows the latest state and never counts one step
    twice. A higher sigma (re-noising) keeps p and cuts the chain: the next update starts from there.
    Staggered as in Alg. 1: update() returns the log p to use at this evaluation; the first one returns the prior.
    """

    def __init__(self, prior=0.01, tau=0.25, delta=0.003, p_min=1e-6, p_max=0.99, kind="ve", per_element=True):
        check_settings(prior, p_min, p_max, tau=tau, delta=delta, kind=kind)
        self.tau, self.delta, self.kind, self.per_element = tau, delta, kind, per_element
        self.log_min, self.log_max = math.log(p_min), math.log(p_max)
        self.log_prior = min(max(math.log(prior), self.log_min), self.log_max)
        self.reset()

    def reset(self, kind: str | None = None):
        if kind is not None:
            check_kind(kind)
            self.kind = kind
        self.cur = self.prev = None  # (sigma [B] fp64 cpu, x, d_neg, d_pos, log p [B])
        self.linked = None  # [B] bool: prev is the level just before cur
        self.sigmas, self.log_ps = [], []

    def update(self, x, sigma, d_neg, d_pos) -> torch.Tensor:
        """log p to use at this evaluation, fp32 shape [B] on x's device."""
        s = torch.as_tensor(sigma).detach().to("cpu", torch.float64).flatten().expand(x.shape[0]).clone()
        tensors = (x.detach().clone(), d_neg.detach().clone(), d_pos.detach().clone())
        if self.cur is None or self.cur[1].shape != x.shape:  # a new run (or a caller that skipped reset)
            logp = torch.full((x.shape[0],), self.log_prior, device=x.device)
            self.prev = self.cur = (s, *tensors, logp)
            self.linked = torch.zeros(x.shape[0], dtype=torch.bool)
            return self._record(s, logp, new_level=True)
        down = s < self.cur[0] * (1 - SIGMA_RTOL)
        up = s > self.cur[0] * (1 + SIGMA_RTOL)
        self.prev = tuple(_pick(down, c, p) for c, p in zip(self.cur, self.prev))
        self.linked = (self.linked | down) & ~up
        p_s, p_x, p_neg, p_pos, p_logp = self.prev
        inc = log_evidence(p_x, p_neg, p_pos, x, p_s, s, self.tau, self.delta, self.kind, self.per_element)
        linked = self.linked.to(x.device)
        logp = torch.where(linked, p_logp + inc.to(x.device), self.cur[4]).clamp(self.log_min, self.log_max)
        self.cur = (s, *tensors, logp)
        return self._record(s, logp, new_level=bool((down | up).any()))

    def _record(self, s, logp, new_level):
        """One diagnostics row per sigma level; a re-evaluated level overwrites its row."""
        if not new_level and self.sigmas:
            self.sigmas.pop(), self.log_ps.pop()
        self.sigmas.append(float(s.max()))
        self.log_ps.append(logp)
        return logp


def _pick(mask: torch.Tensor, a, b):
    """Per-sample torch.where between two states' fields (mask is a CPU [B] bool)."""
    m = mask.to(a.device).reshape(-1, *([1] * (a.ndim - 1)))
    return torch.where(m, a, b)


class DynamicNegativeGuidance:
    """Per-run DNG state: the tracker plus lambda0 and the perpendicular option. reset() before each run."""

    def __init__(self, lambda0=15.0, prior=0.01, tau=0.25, delta=0.003, p_min=1e-6, p_max=0.99, kind="ve",
                 per_element=True, perp=False):
        check_settings(prior, p_min, p_max, lambda0, tau, delta, kind)
        self.lambda0, self.perp = float(lambda0), bool(perp)
        self.tracker = PosteriorTracker(prior, tau, delta, p_min, p_max, kind, per_element)

    def reset(self, kind: str | None = None):
        self.tracker.reset(kind)

    def extra(self, x, sigma, d_pos, d_empty, d_neg) -> torch.Tensor:
        """What DNG adds to uncond + s * (cond - uncond) at this evaluation (tracks the posterior first)."""
        log_p = self.tracker.update(x, sigma, d_neg, d_pos)
        return dng_extra(d_pos, d_empty, d_neg, dng_scale(log_p, self.lambda0), self.perp)

    def history(self) -> dict:
        """sigma [T], p [T, B], lambda [T, B] as CPU fp32 tensors, one row per sigma level of the last run."""
        if not self.tracker.log_ps:
            return {"sigma": torch.zeros(0), "p": torch.zeros(0, 0), "lambda": torch.zeros(0, 0)}
        log_p = torch.stack([q.float().cpu() for q in self.tracker.log_ps])
        return {"sigma": torch.tensor(self.tracker.sigmas), "p": log_p.exp(), "lambda": dng_scale(log_p, self.lambda0)}
