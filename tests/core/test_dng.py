"""DNG math and posterior tracker (Koulischer et al. 2025, eq. 10, Alg. 1-2; docs/method.md) on random tensors:
formulas, staggering, multi-evaluation samplers, clamps, resolution scaling, bad input."""
import math

import pytest
import torch

from negguide.guiders.dng import (DynamicNegativeGuidance, PosteriorTracker, dng, dng_extra, dng_scale,
                                  log_evidence, transition)
from negguide.guiders.perp_neg import perpendicular
from negguide.guiders.technique import Step
from negguide.guiders.convert import batch_dot

gen = torch.Generator().manual_seed(0)


def evaluate(technique, x, sigma, d_pos, d_empty, d_neg):
    """One evaluation of a technique as the host adapter makes it."""
    return technique.term(Step(x, torch.as_tensor(sigma), None, 1.0), {"positive": d_pos, "empty": d_empty, "unwanted": d_neg})


def rand(*shape):
    return torch.randn(*shape, generator=gen)


def t(v):
    return torch.tensor([float(v)], dtype=torch.float64)


def reference_increment(x_prev, d_neg, d_pos, x_now, sp, sn, tau, delta):
    """The update of docs/method.md written out literally, with explicit squared norms."""
    r = sn ** 2 / sp ** 2
    v = sn ** 2 * (1 - r)
    mu_neg = x_prev + (1 - r) * (d_neg - x_prev)
    mu_pos = x_prev + (1 - r) * (d_pos - x_prev)
    dist = ((x_now - mu_neg) ** 2).flatten(1).sum(1) - ((x_now - mu_pos) ** 2).flatten(1).sum(1)
    return -tau / (2 * v) * dist + delta / (2 * v)


def test_ve_increment_matches_spec_formula():
    x_prev, dn, dp, x_now = (rand(3, 4, 8, 8).double() for _ in range(4))
    inc = log_evidence(x_prev, dn, dp, x_now, t(2.0), t(1.5), 0.25, 0.003)
    ref = reference_increment(x_prev, dn, dp, x_now, 2.0, 1.5, 0.25, 0.003)
    assert torch.allclose(inc.double(), ref, rtol=1e-4, atol=1e-4)


def test_const_transition_is_comfys_rf_ancestral_step():
    """Mean and variance of ComfyUI's RF euler_ancestral step (eta 1), rewritten independently here:
    x' = (sd / sp) x + (1 - sd / sp) D, then x_next = (1 - sn) / (1 - sd) * x' + renoise * z."""
    for sp, sn in ((1.0, 0.9), (0.8, 0.5), (0.3, 0.05)):
        sd = sn * (sn / sp)
        scale = (1 - sn) / (1 - sd)
        renoise2 = sn ** 2 - sd ** 2 * (1 - sn) ** 2 / (1 - sd) ** 2
        a, k, v = transition(t(sp), t(sn), "const")
        assert math.isclose(float(a), scale * sd / sp, rel_tol=1e-12)
        assert math.isclose(float(k), scale * (1 - sd / sp), rel_tol=1e-12)
        assert math.isclose(float(v), renoise2, rel_tol=1e-12) and float(v) > 0


def test_ve_transition_is_the_ancestral_step():
    """euler_ancestral at eta 1: sigma_up^2 = sn^2 (sp^2 - sn^2) / sp^2, sigma_down^2 = sn^2 - sigma_up^2,
    x_next = x + (sigma_down - sp) (x - D) / sp + sigma_up z."""
    sp, sn = 3.0, 2.0
    up2 = sn ** 2 * (sp ** 2 - sn ** 2) / sp ** 2
    down = math.sqrt(sn ** 2 - up2)
    a, k, v = transition(t(sp), t(sn), "ve")
    assert math.isclose(float(a), 1 + (down - sp) / sp, rel_tol=1e-12)
    assert math.isclose(float(k), -(down - sp) / sp, rel_tol=1e-12)
    assert math.isclose(float(v), up2, rel_tol=1e-12)


def test_first_evaluation_uses_the_prior_then_updates_are_staggered():
    tr = PosteriorTracker(prior=0.01, tau=1.0, delta=0.0, per_element=False)
    x0, dn0, dp0 = rand(2, 4, 4, 4), rand(2, 4, 4, 4), rand(2, 4, 4, 4)
    first = tr.update(x0, torch.tensor([5.0, 5.0]), dn0, dp0)
    assert torch.allclose(first.exp(), torch.full((2,), 0.01))
    state = DynamicNegativeGuidance(lambda0=15.0, prior=0.01)
    state.reset()
    extra = evaluate(state, x0, torch.tensor([5.0, 5.0]), dp0, rand(2, 4, 4, 4), dn0)
    assert torch.allclose(extra, -15.0 * 0.01 / 0.99 * (dn0 - dp0), atol=1e-5)
    # the second evaluation's p comes from the transition that led to it
    x1 = rand(2, 4, 4, 4)
    second = tr.update(x1, torch.tensor([4.0, 4.0]), rand(2, 4, 4, 4), rand(2, 4, 4, 4))
    expected = (math.log(0.01) + log_evidence(x0, dn0, dp0, x1, t(5.0), t(4.0), 1.0, 0.0)).clamp(math.log(1e-6), math.log(0.99))
    assert torch.allclose(second, expected, atol=1e-5)


def test_repeated_sigma_recomputes_the_level_and_increasing_sigma_cuts_the_chain():
    """heun evaluates sigma_1 twice (predictor, then the corrected state): the level's p must be the
    single update from sigma_0 to the LATEST x at sigma_1, never two updates."""
    s0, s1, s2 = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([1.0])
    xs = [rand(1, 4, 4, 4) for _ in range(5)]
    ds = [(rand(1, 4, 4, 4), rand(1, 4, 4, 4)) for _ in range(5)]

    def run(evals):
        tr = PosteriorTracker(prior=0.3, tau=1.0, delta=0.01, p_min=1e-9, p_max=0.999, per_element=False)
        out = [tr.update(xs[i], s, *ds[i]) for i, s in evals]
        return out, tr

    heun, tr = run([(0, s0), (1, s1), (2, s1), (3, s2)])
    plain, _ = run([(0, s0), (2, s1), (3, s2)])
    assert torch.allclose(heun[2], plain[1]) and torch.allclose(heun[3], plain[2])
    assert len(tr.log_ps) == 3 and tr.sigmas == [3.0, 2.0, 1.0]  # one diagnostics row per level
    # a re-noise (sigma goes up) keeps p; the next step down starts from the re-noised state
    renoise, _ = run([(0, s0), (1, s1), (2, s0), (3, s1)])
    assert torch.allclose(renoise[2], renoise[1])
    from_renoised, _ = run([(2, s0), (3, s1)])
    step = from_renoised[1] - from_renoised[0]
    assert torch.allclose(renoise[3], (renoise[2] + step).clamp(math.log(1e-9), math.log(0.999)), atol=1e-5)


def test_clamps_and_finite_lambda():
    tr = PosteriorTracker(prior=0.5, tau=1.0, delta=0.0, p_min=1e-3, p_max=0.9, per_element=False)
    # from x = 0 the negative predicts 0 (sample 0) or 10 (sample 1), the positive 5; the next state is 0 again:
    # overwhelming evidence for the negative in sample 0 and against it in sample 1
    dn = torch.stack([torch.zeros(8), 10 * torch.ones(8)])
    tr.update(torch.zeros(2, 8), torch.tensor(1.0), dn, 5 * torch.ones(2, 8))
    out = tr.update(torch.zeros(2, 8), torch.tensor(0.5), rand(2, 8), rand(2, 8))
    assert torch.allclose(out.exp(), torch.tensor([0.9, 1e-3]), rtol=1e-5)
    lam = dng_scale(torch.tensor([math.log(1 - 1e-9), math.log(0.99)]), 15.0)
    assert torch.isfinite(lam).all() and math.isclose(float(lam[1]), 15 * 99, rel_tol=1e-4)


def test_nan_inputs_never_give_nan():
    state = DynamicNegativeGuidance()
    state.reset()
    x = rand(2, 4, 4, 4)
    evaluate(state, x, torch.tensor(2.0), rand(2, 4, 4, 4), rand(2, 4, 4, 4), rand(2, 4, 4, 4))
    bad = rand(2, 4, 4, 4)
    bad[0, 0, 0, 0] = float("nan")
    evaluate(state, bad, torch.tensor(1.0), rand(2, 4, 4, 4), rand(2, 4, 4, 4), rand(2, 4, 4, 4))
    hist = state.history()
    assert torch.isfinite(hist["p"]).all() and torch.isfinite(hist["lambda"]).all()
    assert math.isclose(float(hist["p"][1, 0]), 0.01, rel_tol=1e-5)  # no usable evidence: p kept


def test_batch_equals_single_runs():
    xs = [rand(4, 4, 8, 8) for _ in range(3)]
    dns = [rand(4, 4, 8, 8) for _ in range(3)]
    dps = [rand(4, 4, 8, 8) for _ in range(3)]
    sig = [torch.tensor(4.0), torch.tensor(2.0), torch.tensor(1.0)]

    def run(b):
        tr = PosteriorTracker(prior=0.2, tau=0.5, delta=0.01, per_element=False)
        return [tr.update(xs[i][b], sig[i], dns[i][b], dps[i][b]) for i in range(3)][-1]

    batched = run(slice(None))
    for i in range(4):
        assert torch.allclose(batched[i:i + 1], run(slice(i, i + 1)), atol=1e-5)


def test_per_element_mode_is_resolution_independent():
    """The same picture at 2x the resolution (each element repeated 4 times): raw squared norms grow 4x,
    per-element ones do not. Documented scaling: raw tau at N elements acts like per-element tau * N / N_REF."""
    x_prev, dn, dp, x_now = (rand(2, 4, 8, 8) for _ in range(4))
    up = [v.repeat_interleave(2, -1).repeat_interleave(2, -2) for v in (x_prev, dn, dp, x_now)]
    for per_element, factor in ((True, 1.0), (False, 4.0)):
        lo = log_evidence(x_prev, dn, dp, x_now, t(2.0), t(1.0), 0.25, 0.0, per_element=per_element)
        hi = log_evidence(*up, t(2.0), t(1.0), 0.25, 0.0, per_element=per_element)
        assert torch.allclose(hi, factor * lo, rtol=1e-4, atol=1e-5)
    # at the reference size (4x64x64) the two modes agree
    big = [rand(1, 4, 64, 64) for _ in range(4)]
    assert torch.allclose(log_evidence(*big, t(2.0), t(1.0), 0.25, 0.003, per_element=True),
                          log_evidence(*big, t(2.0), t(1.0), 0.25, 0.003, per_element=False), rtol=1e-5)


def test_combination_and_perpendicular_option():
    dp, de, dn = rand(3, 4, 8, 8), rand(3, 4, 8, 8), rand(3, 4, 8, 8)
    lam = torch.tensor([0.0, 1.0, 20.0])
    out = dng(dp, de, dn, lam, 7.5)
    ref = de + 7.5 * (dp - de) - lam.view(-1, 1, 1, 1) * (dn - dp)
    assert torch.allclose(out, ref, atol=1e-4)
    perp = dng_extra(dp, de, dn, lam, perp=True)
    assert batch_dot(perp, dp - de).abs().max() < 1e-2
    # D_neg - D_pos and D_neg - D_empty have the same part perpendicular to D_pos - D_empty
    assert torch.allclose(perp, -lam.view(-1, 1, 1, 1) * perpendicular(dn - de, dp - de), atol=1e-4)
    # neg == pos: nothing to push away from
    assert torch.equal(dng_extra(dp, de, dp, lam), torch.zeros_like(dp))


def test_dtype_is_kept():
    dp, de, dn = (rand(1, 4, 8, 8).half() for _ in range(3))
    assert dng(dp, de, dn, 3.0, 5.0).dtype == torch.float16


@pytest.mark.parametrize("kwargs, name", [
    ({"p_min": 0.5, "p_max": 0.5}, "p_min/p_max"),
    ({"p_min": 0.9, "p_max": 0.1}, "p_min/p_max"),
    ({"p_max": 1.0}, "p_min/p_max"),
    ({"prior": 0.0}, "prior"),
    ({"prior": 1.0}, "prior"),
    ({"prior": float("nan")}, "prior"),
    ({"lambda0": -1.0}, "lambda0"),
    ({"tau": -0.1}, "tau"),
    ({"kind": "eps"}, "kind"),
])
def test_bad_settings_name_the_input(kwargs, name):
    with pytest.raises(ValueError, match=name.split("/")[0]):
        DynamicNegativeGuidance(**kwargs)


def test_prior_outside_the_clamps_is_clamped():
    tr = PosteriorTracker(prior=0.5, p_min=1e-6, p_max=0.2)
    assert math.isclose(float(tr.update(rand(1, 4), 1.0, rand(1, 4), rand(1, 4)).exp()), 0.2, rel_tol=1e-6)


def test_reset_forgets_the_previous_run():
    state = DynamicNegativeGuidance(tau=1.0, per_element=False)
    runs = []
    for _ in range(2):
        state.reset()
        g = torch.Generator().manual_seed(3)
        for s in (3.0, 2.0, 1.0):
            r = [torch.randn(2, 4, 4, 4, generator=g) for _ in range(4)]
            evaluate(state, r[0], torch.tensor(s), r[1], r[2], r[3])
        runs.append(state.history())
    assert len(runs[0]["sigma"]) == 3
    assert torch.equal(runs[0]["p"], runs[1]["p"]) and torch.equal(runs[0]["lambda"], runs[1]["lambda"])
