"""DNG: dynamic negative guidance.

Koulischer et al., "Dynamic Negative Guidance of Diffusion Models" (ICLR 2025), eq. 10 and Alg. 1-2:
the negative scale follows the posterior p = P(c- | x_t) of the unwanted concept, one scalar per sample,

    lambda(x_t) = lambda0 * p / (1 - p)

and p is tracked with Bayes' rule from one evaluation to the next. Text-to-image form (sec. 4.2 puts the
positive model where the unconditional one was; the combination itself is a DECISION, docs/method.md):

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

Divergence correction (docs/method.md, docs/dng.md): the Gaussian kernel above leaves out, to first order, the
condition-dependent part of the reverse kernel's covariance. Where the step injects only a share eta^2 of that
noise (deterministic samplers: 0) the update misses
    -(1 - eta^2) * (1 - r) / 2 * [div D_neg - div D_pos](x_prev)      (VE; r = sigma_now^2 / sigma_prev^2)
eta^2 is read off the observed step, the divergence gap comes from one Hutchinson probe (two extra model rows).
"""
import hashlib
import logging
import math
from collections import OrderedDict

import torch

from .convert import batch_dot, per_sample
from .perp_neg import perpendicular
from .technique import KINDS, Probe, Technique, cfg, probed

_warned = set()  # warnings already logged this session
N_REF = 4 * 64 * 64  # per-element mode rescales squared norms to this size: an SD 512 px latent
SIGMA_RTOL = 1e-5  # sigmas this close count as the same level (heun and friends re-evaluate a level)
CORRECTIONS = ("auto", "on", "off")
PROBE_REL = 0.01  # Hutchinson finite-difference step, as a share of sigma (the scale on which D bends)
POOL_DOF = 256  # the noise share pools its evidence over past steps until it has about this many degrees of freedom
FULL_NOISE = 0.05  # auto stops probing while the measured eta^2 stays above 1 minus this (or its noise)
RUNS_KEPT = 64  # finished runs a technique remembers by their samples, for plots of cached or shared samplers


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


def divergence_weight(sigma_prev: torch.Tensor, sigma_now: torch.Tensor, kind: str = "ve") -> torch.Tensor:
    """c with log p_exact - log p_tracked = -(1 - eta^2) c [div D_neg - div D_pos](x_prev), the divergence taken in
    the sampler's own x (fp64, per sample). VE: c = (1 - r) / 2. Flow: the VE value at sigma / (1 - sigma),
    times 1 - sigma_prev because d x_ve = d x / (1 - sigma)."""
    sp, sn = sigma_prev.double(), sigma_now.double()
    if kind == "ve":
        return (1 - (sn / sp) ** 2) / 2
    ratio = (sn * (1 - sp)) / (sp * (1 - sn)).clamp_min(1e-300)
    return (1 - ratio ** 2) / 2 * (1 - sp)


def noise_share(x_prev, d_prev, x_now, v):
    """(R / v, dof) per sample: the squared part of x_now - x_prev off the deterministic direction x_prev - D(x_prev)
    (every first-order step moves along it; an ancestral step adds eta * sqrt(v) noise on top), in units of the
    ancestral kernel's variance v, with its degrees of freedom (elements - 1). E[R / v] = eta^2 dof."""
    g = (x_prev.float() - d_prev.float()).flatten(1)
    diff = (x_now.float() - x_prev.float()).flatten(1)
    along = (diff * g).sum(1) / (g * g).sum(1).clamp_min(1e-30)
    resid = diff - along[:, None] * g
    return (resid * resid).sum(1) / v.float().clamp_min(1e-30), float(g.shape[1] - 1)


def hutchinson_gap(gap_now, gap_moved, z, step_size):
    """z^T [gap(x + e z) - gap(x)] / e per sample, gap = D_neg - D_pos: for Rademacher z an unbiased estimate of
    div D_neg - div D_pos up to the O(e) finite-difference error. step_size e: [B]."""
    return batch_dot(z.expand_as(gap_now), gap_moved.float() - gap_now.float()) / step_size.float().to(gap_now.device)


def check_correction(correction: str):
    if correction not in CORRECTIONS:
        raise ValueError(f"correction {correction!r}: use one of {CORRECTIONS} (auto: only where the sampler adds "
                         "less noise than the ancestral step)")


def dng_scale(log_p: torch.Tensor, lambda0: float) -> torch.Tensor:
    """lambda = lambda0 * p / (1 - p) from log p. 1 - p = -expm1(log p) stays exact in fp32 where p itself
    would round to 1, so lambda is finite for every p_max < 1."""
    log_p = log_p.float()
    return lambda0 * log_p.exp() / (-torch.expm1(log_p)).clamp_min(1e-30)


def dng_extra(d_pos, d_empty, d_neg, lam, perp: bool = False) -> torch.Tensor:
    """What DNG adds to CFG: -lambda * (D_neg - D_pos), optionally only its part perpendicular to
    D_pos - D_empty (DNG x Perp-Neg). lam is a scalar or one value per sample. In fp32."""
    e = d_neg.float() - d_pos.float()
    if perp:
        e = perpendicular(e, d_pos.float() - d_empty.float())
    return -per_sample(lam, d_pos) * e


def dng(d_pos, d_empty, d_neg, lam, scale: float, perp: bool = False) -> torch.Tensor:
    """The guided denoised prediction D, in d_pos's dtype."""
    return d_empty + (d_pos - d_empty) * scale + dng_extra(d_pos, d_empty, d_neg, lam, perp).to(d_pos.dtype)


def check_settings(prior: float, p_min: float, p_max: float, lambda0: float = 0.0, tau: float = 1.0,
                   delta: float = 0.0, kind: str = "ve"):
    """ValueError naming the bad input. A prior outside [p_min, p_max] is allowed: it gets clamped."""
    for name, value in (("prior", prior), ("p_min", p_min), ("p_max", p_max), ("lambda0", lambda0),
                        ("tau", tau), ("delta", delta)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: {value!r} is not a finite number; set a number (the default is a good start)")
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

    correction (auto / on / off): the divergence correction of each transition, from the divergence gap the
    caller measured at the previous level (update(div=...)), weighted by 1 - eta^2 with eta^2 the noise share
    read off the observed step. Where the share cannot be read (first step, one-element latents, non-finite
    values) auto adds nothing and on assumes a deterministic step (eta = 0).
    """

    def __init__(self, prior=0.01, tau=0.25, delta=0.003, p_min=1e-6, p_max=0.99, kind="ve", per_element=True,
                 correction="off"):
        check_settings(prior, p_min, p_max, tau=tau, delta=delta, kind=kind)
        check_correction(correction)
        self.tau, self.delta, self.kind, self.per_element = tau, delta, kind, per_element
        self.correction = correction
        self.log_min, self.log_max = math.log(p_min), math.log(p_max)
        self.log_prior = min(max(math.log(prior), self.log_min), self.log_max)
        self.reset()

    def reset(self, kind: str | None = None):
        if kind is not None:
            check_kind(kind)
            self.kind = kind
        # per level: (sigma [B] fp64 cpu, x, d_neg, d_pos, log p [B], div gap [B], guided D, pooled R/v [B], pooled dof [B])
        self.cur = self.prev = None
        self.linked = None  # [B] bool: prev is the level just before cur
        self.sigmas, self.log_ps, self.eta2s = [], [], []

    def update(self, x, sigma, d_neg, d_pos, div=None) -> torch.Tensor:
        """log p to use at this evaluation, fp32 shape [B] on x's device. div: this evaluation's divergence gap
        div D_neg - div D_pos ([B]; None or NaN = not measured), used by the NEXT transition's correction."""
        s = torch.as_tensor(sigma).detach().to("cpu", torch.float64).flatten().expand(x.shape[0]).clone()
        nan = torch.full((x.shape[0],), float("nan"), device=x.device)
        div = nan if div is None else div.detach().float().to(x.device)
        tensors = (x.detach().clone(), d_neg.detach().clone(), d_pos.detach().clone())
        if self.cur is None or self.cur[1].shape != x.shape:  # a new run (or a caller that skipped reset)
            logp = torch.full((x.shape[0],), self.log_prior, device=x.device)
            self.prev = self.cur = (s, *tensors, logp, div, tensors[2], torch.zeros_like(nan), torch.zeros_like(nan))
            self.linked = torch.zeros(x.shape[0], dtype=torch.bool)
            return self._record(s, logp, nan, new_level=True)
        down = s < self.cur[0] * (1 - SIGMA_RTOL)
        up = s > self.cur[0] * (1 + SIGMA_RTOL)
        self.prev = tuple(_pick(down, c, p) for c, p in zip(self.cur, self.prev))
        self.linked = (self.linked | down) & ~up
        p_s, p_x, p_neg, p_pos, p_logp, p_div, p_guided, pool_r, pool_n = self.prev
        inc = log_evidence(p_x, p_neg, p_pos, x, p_s, s, self.tau, self.delta, self.kind, self.per_element)
        pool_r, pool_n, eta2 = self._noise(p_x, p_guided, x, p_s, s, pool_r, pool_n)
        inc = inc.to(x.device) + self._correction(p_div, eta2, p_s, s, x)
        linked = self.linked.to(x.device)
        logp = torch.where(linked, p_logp + inc, self.cur[4]).clamp(self.log_min, self.log_max)
        self.cur = (s, *tensors, logp, div, tensors[2], pool_r, pool_n)
        return self._record(s, logp, torch.where(linked, eta2, nan), new_level=bool((down | up).any()))

    def guided(self, d_guided: torch.Tensor):
        """The guided D the sampler stepped with at the current evaluation (default: D_pos): the deterministic
        direction the noise share is measured against."""
        self.cur = (*self.cur[:6], d_guided.detach().clone(), *self.cur[7:])

    def last_eta2(self) -> torch.Tensor | None:
        """The noise share measured at the latest transition ([B], NaN = unreadable), or None before one."""
        return self.eta2s[-1] if len(self.eta2s) > 1 else None

    def full_noise(self) -> bool:
        """Every sample's latest steps injected at least the full ancestral noise (where the weight 1 - eta^2 is 0:
        ancestral and SDE samplers, lcm), within FULL_NOISE or twice the measurement's standard error sqrt(2 / dof),
        whichever is larger; never while that error is above 1/8 (fewer than 128 pooled degrees of freedom: tiny
        latents, the first steps of a 2-D toy)."""
        eta2 = self.last_eta2()
        if eta2 is None:
            return False
        error = 2 * (2 / self.cur[8].clamp_min(1e-30)).sqrt()
        return bool(((error <= 0.25) & (eta2 > 1 - error.clamp_min(FULL_NOISE))).all())

    def _noise(self, x_prev, d_prev, x_now, sp, sn, pool_r, pool_n):
        """Pooled noise share eta^2 (NaN where unreadable) and the updated pools. Pools decay by exp(-dof / POOL_DOF)
        per step: a 4x64x64 latent measures every step on its own, a 2-D toy averages over the run."""
        v = transition(sp, sn, self.kind)[2].float().to(x_now.device)
        if self.kind == "const":  # in VE coordinates x / (1 - sigma) every flow step, RF-ancestral too, moves along g
            a_p, a_n = (per_sample((1 - s).float(), x_now) for s in (sp, sn))
            x_prev, x_now, v = x_prev.float() / a_p, x_now.float() / a_n, v / (1 - sn.float().to(v.device)) ** 2
        r, dof = noise_share(x_prev, d_prev, x_now, v)
        ok = torch.isfinite(r) & (v > 0) & (dof > 0)
        keep = math.exp(-dof / POOL_DOF)
        pool_r = torch.where(ok, keep * pool_r + torch.where(ok, r, 0), pool_r)
        pool_n = torch.where(ok, keep * pool_n + dof, pool_n)
        eta2 = torch.where(pool_n > 0, pool_r / pool_n.clamp_min(1e-30), float("nan"))
        return pool_r, pool_n, eta2

    def _correction(self, div, eta2, sp, sn, x):
        """-(1 - eta^2) c div, scaled like the distance term (tau, per-element), for one transition; 0 where off."""
        if self.correction == "off":
            return torch.zeros_like(div)
        share = torch.where(torch.isfinite(eta2), eta2, 0.0 if self.correction == "on" else 1.0)
        weight = (1 - share).clamp(0.0, 1.0)  # eta^2 > 1 (s_noise > 1): a negative weight measured worse than none
        c = divergence_weight(sp, sn, self.kind).float().to(x.device)
        ok = torch.isfinite(div) & (sn > 0).to(x.device) & (sn < sp).to(x.device)
        scale = self.tau * (N_REF / x[0].numel() if self.per_element else 1.0)
        out = torch.where(ok, -weight * c * torch.nan_to_num(div) * scale, 0.0)
        return torch.nan_to_num(out, nan=0.0, posinf=1e4, neginf=-1e4)

    def _record(self, s, logp, eta2, new_level):
        """One diagnostics row per sigma level; a re-evaluated level overwrites its row."""
        if not new_level and self.sigmas:
            self.sigmas.pop(), self.log_ps.pop(), self.eta2s.pop()
        self.sigmas.append(float(s.max()))
        self.log_ps.append(logp)
        self.eta2s.append(eta2)
        return logp


def _pick(mask: torch.Tensor, a, b):
    """Per-sample torch.where between two states' fields (mask is a CPU [B] bool)."""
    m = mask.to(a.device).reshape(-1, *([1] * (a.ndim - 1)))
    return torch.where(m, a, b)


class DynamicNegativeGuidance(Technique):
    """DNG as a technique: the tracker plus lambda0, pushing away from the condition `unwanted`.
    DNG x Perp-Neg is this technique inside perp_neg.Perpendicular.

    correction: the divergence correction (auto: only where the observed step injects less noise than the
    ancestral one, probing only while that is so; on: every step; off: the uncorrected tracker, no probes). The
    probe asks the host for D_pos and D_neg at x + e z (e = PROBE_REL sigma, z a Rademacher vector shared by the
    batch so a batch equals its single runs): two extra model rows per evaluation."""

    def __init__(self, lambda0=15.0, prior=0.01, tau=0.25, delta=0.003, p_min=1e-6, p_max=0.99, kind="ve",
                 per_element=True, unwanted="unwanted", correction="auto"):
        check_settings(prior, p_min, p_max, lambda0, tau, delta, kind)
        self.lambda0, self.unwanted = float(lambda0), unwanted
        self.tracker = PosteriorTracker(prior, tau, delta, p_min, p_max, kind, per_element, correction)
        self.runs = OrderedDict()  # fingerprint of a run's samples -> its history(); kept across reset()
        self.reset()

    @property
    def correction(self) -> str:
        return self.tracker.correction

    def reset(self, run=None):
        """A new run (the tracker forgets everything); run.kind picks the VE or flow transition."""
        self.tracker.reset(None if run is None else run.kind)
        self._gen = torch.Generator().manual_seed(0)  # the same probes on every run: a cached guider repeats itself
        self._probe = None

    def conditions(self, step):
        return [self.unwanted]

    def probe(self, step):
        """D_pos and D_neg at x + e z, or None where no later transition can use them (correction off, the last
        level of the schedule, auto while the sampler injects the full ancestral noise)."""
        self._probe = None
        if self.correction == "off" or _last_level(step):
            return None
        if self.correction == "auto" and self.tracker.full_noise():
            return None
        z = torch.randint(0, 2, step.x.shape[1:], generator=self._gen).to(step.x.device, step.x.dtype) * 2 - 1
        e = PROBE_REL * torch.as_tensor(step.sigma, dtype=torch.float32).flatten().expand(step.x.shape[0]).to(step.x.device)
        self._probe = (z, e)
        return Probe(per_sample(e, step.x).to(step.x.dtype) * z, ("positive", self.unwanted))

    def term(self, step, d):
        """-lambda (D_neg - D_pos) at this evaluation; the posterior is tracked first (fp32)."""
        d_pos, d_neg = d["positive"], d[self.unwanted]
        div = None
        if self._probe is not None and probed(self.unwanted) in d and probed("positive") in d:
            div = hutchinson_gap(d_neg - d_pos, d[probed(self.unwanted)] - d[probed("positive")], *self._probe)
        log_p = self.tracker.update(step.x, step.sigma, d_neg, d_pos, div)
        extra = dng_extra(d_pos, None, d_neg, dng_scale(log_p, self.lambda0))
        self.tracker.guided(cfg(step, d).float() + extra)
        self._warn_if_deterministic()
        return extra

    def _warn_if_deterministic(self):
        eta2 = self.tracker.last_eta2()
        if self.correction != "off" or eta2 is None or not bool((eta2 < 0.5).any()) or "off" in _warned:
            return
        _warned.add("off")  # once per session
        logging.warning("NegGuide DNG: the sampler adds little noise per step (measured share %.2f of the ancestral "
                        "noise) and the divergence correction is off, so the posterior of the unwanted concept is "
                        "tracked poorly (docs/dng.md in the NegGuide folder): set correction to auto.",
                        float(eta2.nan_to_num(1.0).min()))

    def tracking_note(self, history: dict | None = None) -> tuple[str, bool]:
        """(one line for the plot, whether it is a warning) from a run's measured noise share ("step noise": the share
        of the ancestral step's noise the sampler injected); history: that run's history() (default: the last run)."""
        eta2 = (history or self.history())["eta2"]
        share = float(eta2.nanmean()) if eta2.numel() and not eta2.isnan().all() else float("nan")
        if not share < 0.95:  # full ancestral noise, or not measurable: the uncorrected tracker is the right one
            return "", False
        if self.correction == "off":
            return f"poor tracking: {max(share, 0):.0%} step noise, correction off (use auto)", True
        return f"divergence correction on ({max(share, 0):.0%} step noise)", False

    def history(self) -> dict:
        """sigma [T], p [T, B], lambda [T, B], eta2 [T, B] (measured noise share of the step into each level, NaN
        where unreadable) as CPU fp32 tensors, one row per sigma level of the last run."""
        if not self.tracker.log_ps:
            return {"sigma": torch.zeros(0), "p": torch.zeros(0, 0), "lambda": torch.zeros(0, 0), "eta2": torch.zeros(0, 0)}
        log_p = torch.stack([q.float().cpu() for q in self.tracker.log_ps])
        return {"sigma": torch.tensor(self.tracker.sigmas), "p": log_p.exp(), "lambda": dng_scale(log_p, self.lambda0),
                "eta2": torch.stack([q.float().cpu() for q in self.tracker.eta2s])}


    def finish(self, samples: torch.Tensor):
        """File the run that just ended under the samples it returned: one guider can serve several samplers, and a
        plot wired to one sampler's output must draw that sampler's run (run_history), not whichever ran last."""
        key = fingerprint(samples)
        self.runs[key] = self.history()
        self.runs.move_to_end(key)
        while len(self.runs) > RUNS_KEPT:
            self.runs.popitem(last=False)

    def run_history(self, samples: torch.Tensor) -> dict | None:
        """history() of the run that returned these samples, or None if no remembered run did."""
        return self.runs.get(fingerprint(samples))


def fingerprint(samples: torch.Tensor) -> str:
    """A key for a run's output: shape plus a hash of its CPU fp32 values, so the same latent moved to another
    device (the host's intermediate device) or passed along by the host gets the same key."""
    t = samples.detach().to("cpu", torch.float32).contiguous()
    return f"{tuple(t.shape)}:{hashlib.blake2b(t.numpy().data, digest_size=16).hexdigest()}"


def _last_level(step) -> bool:
    """This evaluation is at the schedule's lowest non-zero sigma: no transition follows that could use a probe."""
    if step.sigmas is None:
        return False
    s = torch.as_tensor(step.sigmas, dtype=torch.float64).cpu()
    s = s[s > 0]
    sigma = float(torch.as_tensor(step.sigma, dtype=torch.float64).max())
    return s.numel() > 0 and sigma <= float(s.min()) * (1 + SIGMA_RTOL)
