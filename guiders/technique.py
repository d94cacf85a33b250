"""The technique protocol: what every guidance method in this package implements, and how wrappers compose.

A technique adds one term to classifier-free guidance (Ho & Salimans 2022) at every model evaluation:

    D = D_empty + s * (D_pos - D_empty) + term

The host (one adapter for every technique) asks `conditions(step)` which extra prompts it needs at this
evaluation, evaluates the positive, the empty prompt and those in one batch, then asks `term(step, d)`. `reset(run)`
starts a sampling run: per-run state (a tracked posterior, validation against the latent batch) lives on the
technique and is rebuilt there, so a cached guider never carries one run's state into the next; `finish(samples)`
ends a run with what it returned (DNG files its diagnostics under it). Wrappers
(Perpendicular, ScoreClip, Window) take any technique and are techniques themselves, so combinations are objects
composed by the nodes, never flags inside one method.
"""
from dataclasses import dataclass

import torch

KINDS = ("ve", "const")  # x = x0 + sigma n (eps / v models), x = (1 - sigma) x0 + sigma n (flow models)
EMPTY = "empty"


@dataclass(frozen=True)
class Run:
    """One sampling run: its noise schedule, the model's sampling kind and the latent batch size (None: unknown)."""
    sigmas: torch.Tensor
    kind: str = "ve"
    batch: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}: use one of {KINDS}")


@dataclass(frozen=True)
class Step:
    """One model evaluation: the sampler's x, its sigma (scalar or [B]), the run's schedule (None when the host
    does not provide it) and the CFG scale s."""
    x: torch.Tensor
    sigma: torch.Tensor
    sigmas: torch.Tensor | None
    scale: float


@dataclass(frozen=True, eq=False)
class Probe:
    """Prompts to evaluate a second time at x + offset (finite-difference rows, e.g. DNG's divergence probe): one
    offset for all of them, so the host adds ONE batched model call at the same sigma. Their predictions land in
    d[probed(name)]; a host that cannot evaluate probes leaves them out and the technique must cope."""
    offset: torch.Tensor
    names: tuple


def probed(name: str) -> str:
    """The key of a probe row's prediction in d."""
    return "probe:" + name


class Technique:
    """Base class with the do-nothing defaults: plain CFG."""

    def reset(self, run: Run) -> None:
        """Start a sampling run: validate against it and forget every earlier run."""

    def conditions(self, step: Step) -> list[str]:
        """Names of the prompts this evaluation needs besides the positive ("empty" included if it uses D_empty
        even at s = 1). An empty list means the term is None and nothing extra is evaluated."""
        return []

    def probe(self, step: Step) -> Probe | None:
        """Prompts to evaluate again at a shifted input, asked after conditions() and before term(); None = none."""
        return None

    def term(self, step: Step, d: dict) -> torch.Tensor | None:
        """The fp32 term added to CFG, from the denoised predictions d[name] ("positive", "empty" and the names
        conditions() asked for). None = plain CFG, so the host keeps CFG's exact arithmetic."""
        return None

    def finish(self, samples: torch.Tensor) -> None:
        """The run ended and returned these samples (e.g. to file its diagnostics under them)."""

    def parts(self):
        """This technique and every technique it wraps, outermost first (for diagnostics)."""
        yield self


class Wrapper(Technique):
    """A technique built around another one; by default it changes nothing."""

    def __init__(self, inner: Technique):
        self.inner = inner

    def reset(self, run):
        self.inner.reset(run)

    def conditions(self, step):
        return self.inner.conditions(step)

    def probe(self, step):
        return self.inner.probe(step)

    def term(self, step, d):
        return self.inner.term(step, d)

    def finish(self, samples):
        self.inner.finish(samples)

    def parts(self):
        yield self
        yield from self.inner.parts()


def find(technique: Technique, kind: type):
    """The first part of a composed technique that is a `kind`, or None."""
    return next((t for t in technique.parts() if isinstance(t, kind)), None)


def skips_empty(step: Step, skip_empty_at_cfg1: bool = True) -> bool:
    """Whether CFG itself leaves the empty prompt out at this evaluation: s = 1 (ComfyUI's cfg-1 optimisation)."""
    return skip_empty_at_cfg1 and abs(step.scale - 1.0) < 1e-9


def evaluated(technique: Technique, step: Step, skip_empty_at_cfg1: bool = True) -> list[str]:
    """The prompts to evaluate, in batch order: positive and empty first (the CFG pair, where hooks written for
    CFG look for them), then the technique's extras. The empty prompt is left out only where CFG itself would
    skip it: s = 1 and the technique needs nothing."""
    wanted = list(dict.fromkeys(technique.conditions(step)))
    if skips_empty(step, skip_empty_at_cfg1) and not wanted:
        return ["positive"]
    return ["positive", EMPTY, *(n for n in wanted if n not in ("positive", EMPTY))]


def cfg(step: Step, d: dict) -> torch.Tensor:
    """Plain CFG from evaluated predictions: D_empty + s (D_pos - D_empty), or D_pos where the empty prompt was
    skipped (s = 1)."""
    return d[EMPTY] + (d["positive"] - d[EMPTY]) * step.scale if EMPTY in d else d["positive"]


def guide(technique: Technique, step: Step, d: dict) -> torch.Tensor:
    """The guided D from evaluated predictions, without host hooks (the analytic lab uses this)."""
    out = cfg(step, d)
    extra = technique.term(step, d)
    return out if extra is None else out + extra.to(out.dtype)


FOLD_WIDTH = 0.5  # |s - 1| below which part of the term moves into the positive (docs/method.md)


def fold_cfg_pair(cond, uncond, extra, scale: float):
    """Rewrite `uncond + scale * (cond - uncond) + extra` as a plain CFG pair (cond + a extra, uncond + b extra),
    s a + (1 - s) b = 1, so plain CFG on the pair gives the same result.

    Hooks such as sampler_cfg_function only understand a (cond, uncond, scale) triple. DECISION: the term goes into
    the negative side (a = 0, b = 1 / (1 - s)) so the positive stays the reference; b blows up near s = 1, so within
    FOLD_WIDTH of it the share t = ((s - 1) / FOLD_WIDTH)^2 goes into the negative and 1 - t into the positive:
    a = (1 - t) / s, b = (1 - s) / FOLD_WIDTH^2. Both are continuous in s, so what a cfg hook sees (RescaleCFG's
    norms) does not jump as the scale crosses 1 +- FOLD_WIDTH, and at s = 1 the term sits wholly in the positive.
    """
    if extra is None:
        return cond, uncond
    t = ((scale - 1.0) / FOLD_WIDTH) ** 2
    if t >= 1.0:
        return cond, uncond - extra / (scale - 1.0)
    return cond + extra * ((1.0 - t) / scale), uncond + extra * ((1.0 - scale) / FOLD_WIDTH ** 2)
