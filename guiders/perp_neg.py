"""Perp-Neg: perpendicular negative guidance.

Armandpour et al., "Re-imagine the Negative Prompt Algorithm: Transform 2D Diffusion into 3D,
alleviate Janus problem and Beyond" (2023), eq. 6 and the Perp-Neg algorithm of sec. 2.2.3:

    e_pos = D_pos - D_empty,  e_i = D_neg_i - D_empty
    e_i_perp = e_i - <e_i, e_pos> / ||e_pos||^2 * e_pos          (per sample)
    D = D_empty + s * (e_pos - sum_i w_i * e_i_perp)

Only the component of each negative that is perpendicular to the positive direction is removed, so a
negative that overlaps the positive cannot cancel it (sec. 2.2.2).
"""
import torch

from .vocab import TINY, batch_dot, per_sample


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
