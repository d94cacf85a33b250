"""Perp-Neg: perpendicular negative guidance.

Armandpour et al., "Re-imagine the Negative Prompt Algorithm: Transform 2D Diffusion into 3D,
alleviate Janus problem and Beyond" (2023), eq. 6 and the Perp-Neg algorithm of sec. 2.2.3:

    e_pos = D_pos - D_empty,  e_i = D_neg_i - D_empty
    e_i_perp = e_i - <e_i, e_pos> / ||e_pos||^2 * e_pos          (per sample)
    D = D_empty + s * (e_pos - sum_i w_i * e_i_perp)

Only the component of each negative that is perpendicular to the positive direction is removed, so a
negative that overlaps the positive cannot cancel it (sec. 2.2.2).
"""
import math

import torch

from .convert import TINY, batch_dot, per_sample
from .technique import EMPTY, Technique, Wrapper


def perpendicular(e: torch.Tensor, e_pos: torch.Tensor) -> torch.Tensor:
    """Component of e perpendicular to e_pos, per sample, in fp32. If ||e_pos|| ~ 0 it is e itself."""
    norm2 = batch_dot(e_pos, e_pos)
    coef = torch.where(norm2 > TINY, batch_dot(e, e_pos) / norm2.clamp_min(TINY), torch.zeros_like(norm2))
    return e.float() - coef.reshape(-1, *([1] * (e.ndim - 1))) * e_pos.float()


def perp_term(d_pos, d_empty, d_negs, weights) -> torch.Tensor:
    """sum_i w_i * e_i_perp in fp32. weights[i] is a scalar or one weight per batch element."""
    if len(d_negs) != len(weights):
        raise ValueError(f"{len(d_negs)} negatives but {len(weights)} weights")
    e_pos = d_pos - d_empty
    total = torch.zeros_like(d_pos, dtype=torch.float32)
    for d_neg, w in zip(d_negs, weights):
        total += per_sample(w, d_pos) * perpendicular(d_neg - d_empty, e_pos)
    return total


def perp_neg_extra(d_pos, d_empty, d_negs, weights, scale: float):
    """What Perp-Neg adds to plain CFG (D_empty + s * e_pos): -s * sum_i w_i e_i_perp, in d_pos's dtype.
    None when there is no negative, so callers can keep CFG's exact arithmetic."""
    if not d_negs:
        return None
    return (-scale * perp_term(d_pos, d_empty, d_negs, weights)).to(d_pos.dtype)


def perp_neg(d_pos, d_empty, d_negs, weights, scale: float) -> torch.Tensor:
    """The guided denoised prediction D, in the dtype of d_pos."""
    out = d_empty + (d_pos - d_empty) * scale
    extra = perp_neg_extra(d_pos, d_empty, d_negs, weights, scale)
    return out if extra is None else out + extra


def cebm(d_pos, d_empty, d_negs, weights, scale: float) -> torch.Tensor:
    """Classic composable negative prompting (CEBM, eq. 5), kept only as the reference the paper compares to."""
    total = sum(per_sample(w, d_pos) * (d - d_empty).float() for d, w in zip(d_negs, weights))
    return d_empty + (d_pos - d_empty - total.to(d_pos.dtype)) * scale


def weight_values(weight) -> list:
    """A negative's weight as a list: one value, or one per latent."""
    return list(weight) if isinstance(weight, (list, tuple)) else [weight]


def check_weight(label: str, weight, batch: int | None = None):
    """A negative weight: a number >= 0, or a list with one such number per latent (ValueError naming `label`)."""
    values = weight_values(weight)
    if not values:
        raise ValueError(f"{label}: empty weight list; give one weight or one per latent")
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{label}: weight {v!r} is not allowed; negative weights must be finite numbers >= 0")
    if batch is not None and len(values) not in (1, batch):
        raise ValueError(f"{label}: {len(values)} per-sample weights for a latent batch of {batch}; "
                         "give one weight, or exactly one per latent in the batch")


class PerpNeg(Technique):
    """Perp-Neg as a technique. negatives: [(condition name, weight, label)]; a weight is a number or one per
    latent. A negative whose weights are all zero contributes exactly nothing, so it is never evaluated."""

    def __init__(self, negatives):
        self.negatives = [(name, weight, label) for name, weight, label in negatives]
        for _, weight, label in self.negatives:
            check_weight(label, weight)
        self.active = [(n, w) for n, w, _ in self.negatives if any(v != 0 for v in weight_values(w))]

    def reset(self, run):
        for _, weight, label in self.negatives:
            check_weight(label, weight, batch=run.batch)

    def conditions(self, step):
        return [EMPTY, *(n for n, _ in self.active)] if self.active else []

    def term(self, step, d):
        if not self.active:
            return None
        return -step.scale * perp_term(d["positive"], d[EMPTY], [d[n] for n, _ in self.active],
                                       [w for _, w in self.active])


class Perpendicular(Wrapper):
    """Keeps only the part of another technique's term perpendicular to e_pos = D_pos - D_empty, per sample
    (Perp-Neg's projection applied to any negative term, e.g. DNG x Perp-Neg). The projection is linear, so for
    a sum of weighted negative directions it equals projecting each one."""

    def conditions(self, step):
        inner = self.inner.conditions(step)
        return [EMPTY, *inner] if inner else []

    def term(self, step, d):
        extra = self.inner.term(step, d)
        return None if extra is None else perpendicular(extra, d["positive"] - d[EMPTY])
