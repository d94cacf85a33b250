"""Perp-Neg math (Armandpour et al. 2023, eq. 6) on random tensors: per sample, guarded, and the paper's sec. 2.2.2 property."""
import pytest
import torch

from negguide.guiders.perp_neg import cebm, perp_neg, perpendicular
from negguide.guiders.convert import batch_dot
from negguide.guiders.technique import fold_cfg_pair

gen = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=gen)


def test_perpendicular_part_is_orthogonal_per_sample():
    e, e_pos = rand(3, 4, 8, 8), rand(3, 4, 8, 8)
    perp = perpendicular(e, e_pos)
    assert batch_dot(perp, e_pos).abs().max() < 1e-3
    # removing the parallel part per sample: reconstruct e from perp + projection
    coef = batch_dot(e, e_pos) / batch_dot(e_pos, e_pos)
    assert torch.allclose(perp + coef.view(-1, 1, 1, 1) * e_pos, e, atol=1e-5)


def test_batch_equals_single_runs():
    pos, emp, n1, n2 = (rand(4, 4, 8, 8) for _ in range(4))
    weights = [1.5, [0.0, 1.0, 2.0, 3.0]]
    batched = perp_neg(pos, emp, [n1, n2], weights, 7.5)
    for i in range(4):
        single = perp_neg(pos[i:i + 1], emp[i:i + 1], [n1[i:i + 1], n2[i:i + 1]], [1.5, weights[1][i]], 7.5)
        assert torch.allclose(batched[i:i + 1], single, atol=1e-5)


def test_whole_batch_projection_would_differ():
    """The bug in core's PerpNegGuider (projection over the whole batch) is visible at batch 2."""
    pos, emp, neg = rand(2, 4, 8, 8), rand(2, 4, 8, 8), rand(2, 4, 8, 8)
    e_pos, e = pos - emp, neg - emp
    whole = e - (e * e_pos).sum() / e_pos.norm() ** 2 * e_pos
    ours = perp_neg(pos, emp, [neg], [1.0], 1.0) - emp
    assert not torch.allclose(ours, e_pos - whole, atol=1e-3)


def test_negative_equal_to_positive_keeps_plain_cfg_while_cebm_cancels():
    pos, emp = rand(2, 4, 8, 8), rand(2, 4, 8, 8)
    cfg = emp + 7.5 * (pos - emp)
    assert torch.allclose(perp_neg(pos, emp, [pos], [1.0], 7.5), cfg, atol=1e-4)
    assert torch.allclose(cebm(pos, emp, [pos], [1.0], 7.5), emp, atol=1e-5)  # positive cancelled


def test_zero_positive_direction_is_finite_and_uses_full_negative():
    emp, neg = rand(2, 4, 8, 8), rand(2, 4, 8, 8)
    out = perp_neg(emp.clone(), emp, [neg], [2.0], 7.5)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, emp - 7.5 * 2.0 * (neg - emp), atol=1e-4)


def test_zero_weights_are_exactly_cfg():
    pos, emp, neg = rand(2, 4, 8, 8), rand(2, 4, 8, 8), rand(2, 4, 8, 8)
    assert torch.equal(perp_neg(pos, emp, [neg], [0.0], 7.5), emp + (pos - emp) * 7.5)


def test_half_precision_in_half_out():
    pos, emp, neg = (rand(2, 4, 8, 8).half() for _ in range(3))
    out = perp_neg(pos, emp, [neg], [1.5], 7.5)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    ref = perp_neg(pos.float(), emp.float(), [neg.float()], [1.5], 7.5)
    assert torch.allclose(out.float(), ref, atol=0.05)


def test_weight_list_must_match_batch():
    pos = rand(2, 4, 8, 8)
    with pytest.raises(ValueError, match="per-sample"):
        perp_neg(pos, pos, [pos], [[1.0, 2.0, 3.0]], 7.5)


@pytest.mark.parametrize("scale", [0.0, 0.7, 1.0, 1.3, 7.5])
def test_folded_pair_reproduces_guided_result(scale):
    cond, uncond, extra = rand(2, 4, 8, 8), rand(2, 4, 8, 8), rand(2, 4, 8, 8)
    c, u = fold_cfg_pair(cond, uncond, extra, scale)
    assert torch.allclose(u + scale * (c - u), uncond + scale * (cond - uncond) + extra, atol=1e-4)
    if abs(scale - 1) >= 0.5:
        assert c is cond  # the positive stays the CFG reference (DECISION in docs/method.md)
