"""Score clipping: the D-SDS schedule, the clip, the step mapping, and its effect on an exact mixture."""
import pytest
import torch

from negguide.lab.gmm import SAMPLERS, GaussianMixture, karras_sigmas, prior_noise
from negguide.guiders.perp_neg import perp_neg_extra
from negguide.guiders.score_clip import clip_guidance_extra, clip_score, clip_threshold, scheduled_clip, step_of


def test_threshold_schedule():
    assert clip_threshold(0, 10, 2.0, 8.0) == 2.0
    assert clip_threshold(10, 10, 2.0, 8.0) == 8.0
    assert clip_threshold(5, 10, 2.0, 8.0) == pytest.approx(5.0)
    assert clip_threshold(3, 4, 0.5, 2.0) == pytest.approx(0.25 * 0.5 + 0.75 * 2.0)
    assert clip_threshold(0, 0, 2.0, 8.0) == 2.0 and clip_threshold(20, 10, 2.0, 8.0) == 8.0


def test_clip_is_max_min():
    x = torch.linspace(-5, 5, 101)
    assert torch.equal(clip_score(x, 2.0), torch.maximum(torch.minimum(x, torch.tensor(2.0)), torch.tensor(-2.0)))
    assert torch.equal(clip_score(x, -2.0), clip_score(x, 2.0))
    per_row = clip_score(torch.full((2, 3), 9.0), torch.tensor([[1.0], [4.0]]))
    assert per_row.tolist() == [[1.0] * 3, [4.0] * 3]


def test_step_of_counts_sampler_steps():
    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])   # 4 steps, evaluated at 10, 5, 2, 1
    assert [step_of(s, sigmas) for s in (10.0, 5.0, 2.0, 1.0)] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert step_of(3.0, sigmas) == (1, 3)                # heun's second evaluation belongs to its step
    assert step_of(torch.tensor([5.0, 5.0]), sigmas) == (1, 3)
    assert step_of(20.0, sigmas) == (0, 3) and step_of(10.0, torch.tensor([10.0, 0.0])) == (0, 0)


def data(seed=0, b=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 4, 8, 8, generator=g) * 2 for _ in range(3)]


def test_clipped_guidance_is_bounded_and_small_guidance_untouched():
    d_pos, d_empty, d_neg = data()
    sigma, scale = torch.tensor([0.5, 1.0, 2.0]), 7.5
    extra = perp_neg_extra(d_pos, d_empty, [d_neg], [1.5], scale)
    new = clip_guidance_extra(d_pos, d_empty, extra, scale, sigma, 2.0)
    guidance = scale * (d_pos - d_empty) + new
    bound = 2.0 * sigma.reshape(-1, 1, 1, 1)
    assert (guidance.abs() <= bound + 1e-5).all()
    original = scale * (d_pos - d_empty) + extra
    inside = original.abs() < bound
    assert inside.any() and (~inside).any()
    assert torch.allclose(guidance[inside], original[inside], atol=1e-5)
    assert torch.allclose(guidance[~inside], original.sign()[~inside] * bound.expand_as(original)[~inside], atol=1e-5)
    # a loose bound changes nothing; no extra (plain CFG) is clipped too
    assert torch.allclose(clip_guidance_extra(d_pos, d_empty, extra, scale, sigma, 1e9), extra, atol=1e-4)
    plain = clip_guidance_extra(d_pos, d_empty, None, scale, sigma, 0.1)
    assert (scale * (d_pos - d_empty) + plain).abs().max() <= 0.2 + 1e-5


def test_dtype_and_finiteness():
    d_pos, d_empty, d_neg = (t.half() for t in data())
    out = clip_guidance_extra(d_pos, d_empty, None, 7.5, torch.zeros(3), 2.0)  # sigma 0: guidance clipped to 0
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.allclose((7.5 * (d_pos.float() - d_empty.float()) + out.float()), torch.zeros(1), atol=0.1)


def test_scheduled_clip_uses_the_step():
    d_pos, d_empty, _ = data()
    sigmas = torch.tensor([10.0, 5.0, 1.0, 0.0])
    first = scheduled_clip(d_pos, d_empty, None, 7.5, torch.tensor(10.0), sigmas, 0.01, 100.0)
    last = scheduled_clip(d_pos, d_empty, None, 7.5, torch.tensor(1.0), sigmas, 100.0, 0.01)
    for out, sigma in ((first, 10.0), (last, 1.0)):
        assert (7.5 * (d_pos - d_empty) + out).abs().max() <= 0.01 * sigma + 1e-5


def test_clipping_keeps_perp_neg_near_the_data_on_a_mixture():
    """Exact 2-D mixture (scripts/score_clip_gmm.py has the full table): Perp-Neg's negative throws samples
    far off the data; the DeepFloyd schedule 0.5 -> 2 keeps them within a few stds."""
    means = [(-3.0, 0.0), (3.0, 0.0), (0.0, 4.0), (0.0, -4.0)]
    empty = GaussianMixture(means, 0.5, [1, 1, 1, 1])
    pos, neg = empty.subset([0, 1]), empty.subset([1, 2])
    sigmas = karras_sigmas(20)

    def run(clip):
        def model(x, sigma):
            de, dp, dn = empty.denoise(x, sigma), pos.denoise(x, sigma), neg.denoise(x, sigma)
            extra = perp_neg_extra(dp, de, [dn], [1.5], 7.5)
            extra = scheduled_clip(dp, de, extra, 7.5, sigma, sigmas, *clip) if clip else extra
            return de + 7.5 * (dp - de) + extra
        x = prior_noise(500, 2, sigmas, generator=torch.Generator().manual_seed(0))
        x = SAMPLERS["euler"](model, x, sigmas)
        return torch.cdist(x, torch.tensor(means[:2], dtype=x.dtype)).min(1).values.median().item()

    off, clipped = run(None), run((0.5, 2.0))
    assert off > 10 and clipped < 4, (off, clipped)
