"""DNG on exact scores (Koulischer et al. 2025, App. B and fig. 1 / 3a), with the analytic mixture lab.

Unconditional = 5 modes; positive = modes {A, B, C}; unwanted = {A}, so the positive with A removed is {B, C}
with B:C = 1:1. B sits next to A, C far from it: pushing away from A with a constant scale hurts B more.
"""
import functools

import torch

from negguide.guiders.dng import DynamicNegativeGuidance, dng
from negguide.lab import gmm as L

UNCOND = L.GaussianMixture([[-1.5, 0.0], [1.5, 0.0], [0.0, 6.0], [6.0, -3.0], [-6.0, -3.0]], 0.5,
                           [0.25, 0.2, 0.2, 0.2, 0.15])
POS = UNCOND.subset([0, 1, 2])
NEG = POS.subset([0])
REST = POS.subset([1, 2])
FAR = L.GaussianMixture([[40.0, 40.0]], 0.5, [1.0])
PRIOR = float(POS.weights[0])


def exact_term(lambda0, kind="ve"):
    """-lambda (D_neg - D_pos) with the exact posterior P(A | x) under the positive."""
    def term(x, sigma, d_pos, d_empty, d_neg):
        p = L.posterior_mass(POS, [0], x, sigma, kind)[:, None]
        return -(lambda0 * p / (1 - p)) * (d_neg - d_pos)
    return L.Term(term)


def denoisers(kind="ve", unwanted=NEG):
    return {"positive": L.denoiser(POS, kind), "empty": L.denoiser(UNCOND, kind), "unwanted": L.denoiser(unwanted, kind)}


def run(technique, n=3000, steps=40, kind="ve", sampler="euler_ancestral", scale=1.0, on_eval=None, seed=0):
    """Samples with a technique (a guiders/ object or an exact L.Term) driven as the host drives it."""
    sigmas = L.karras_sigmas(steps) if kind == "ve" else L.flow_sigmas(steps)
    model = L.guided_model(technique, denoisers(kind), scale, sigmas, kind, on_eval)
    gen = torch.Generator().manual_seed(seed)
    return L.SAMPLERS[sampler](model, L.prior_noise(n, 2, sigmas, gen), sigmas, kind, gen)


def masses(x):
    """Fraction of samples in each of the 5 modes."""
    return torch.bincount(UNCOND.posterior(x, 1e-3).argmax(1), minlength=5).double() / x.shape[0]


def off_modes(x):
    """Fraction of samples more than 3 standard deviations from every mode: not data at all."""
    return float((torch.cdist(x, UNCOND.means).min(1).values > 1.5).double().mean())


@functools.cache
def constant_scale_run():
    """Negative prompting at the same nominal scale as lambda0 = 1: D_pos - (D_neg - D_pos)."""
    return run(L.Term(lambda x, s, dp, de, dn: -(dn - dp)))


def test_exact_posterior_dng_is_cfg_toward_the_remaining_modes_as_fields():
    """eq. 17: with p = P(A | x), D_pos - lambda0 p/(1-p) (D_neg - D_pos) = D_pos + lambda0 (D_rest - D_pos),
    and the text-to-image form just adds CFG on the positive."""
    x = 4 * torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigma in (0.1, 0.8, 2.0, 10.0):
        d_pos, d_neg, d_rest, d_empty = (m.denoise(x, sigma) for m in (POS, NEG, REST, UNCOND))
        p = L.posterior_mass(POS, [0], x, sigma)
        keep = p < 0.99  # where p rounds to 1 the identity is inf * 0; D_rest itself is still defined there
        assert keep.sum() > 100
        x, p, d_pos, d_neg, d_rest, d_empty = (v[keep] for v in (x, p, d_pos, d_neg, d_rest, d_empty))
        for lambda0, scale in ((1.0, 1.0), (2.5, 1.0), (1.0, 4.0), (3.0, 7.5)):
            out = dng(d_pos, d_empty, d_neg, lambda0 * p / (1 - p), scale)
            ref = d_empty + scale * (d_pos - d_empty) + lambda0 * (d_rest - d_pos)
            assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (sigma, lambda0, scale)


def test_exact_posterior_dng_samples_the_remaining_modes_and_negative_prompting_distorts_them():
    want = masses(run(L.Term(lambda x, s, dp, de, dn: L.denoiser(REST)(x, s) - dp)))  # sampling the remaining modes directly
    x = run(exact_term(1.0))
    got = masses(x)
    assert got[0] < 0.005  # the unwanted mode is gone
    assert (got - want).abs().max() < 0.02 and abs(got[1] / got[2] - 1.0) < 0.1  # B:C stays 1:1
    assert off_modes(x) < 0.01
    constant = masses(constant_scale_run())
    assert off_modes(constant_scale_run()) > 0.3  # most of its samples are pushed off the data altogether
    assert constant[0] > 0.03  # it does not even remove A reliably
    assert constant[1] / constant[2] < 0.6  # and it starves B, the mode next to A
    assert constant[3] + constant[4] > 0.02  # and it pushes samples into modes the positive never had


def tracked(lambda0, tau=1.0, delta=0.0, kind="ve", p_min=1e-12, p_max=1 - 1e-6):
    return DynamicNegativeGuidance(lambda0, PRIOR, tau, delta, p_min, p_max, kind, per_element=False)


def test_tracked_posterior_follows_the_exact_one():
    """fig. 3a: unguided positive sampling (lambda0 = 0), tau = 1, delta = 0: the tracked p per sample stays close
    to the exact P(A | x_t) along euler_ancestral trajectories, in VE and in flow (RF) form."""
    for kind in ("ve", "const"):
        state, errors, agree = tracked(0.0, kind=kind), [], []

        def record(x, sigma, state=state, errors=errors, agree=agree, kind=kind):
            exact = L.posterior_mass(POS, [0], x, sigma, kind)
            mine = state.tracker.log_ps[-1].double().exp()
            errors.append((mine - exact).abs().mean())
            agree.append(((mine > 0.5) == (exact > 0.5)).double().mean())

        run(state, n=1000, steps=30, kind=kind, on_eval=record)
        assert max(errors) < 0.15 and sum(errors) / len(errors) < 0.08, (kind, [round(float(e), 3) for e in errors])
        assert agree[-1] > 0.88, (kind, float(agree[-1]))


def test_tracked_dng_removes_the_mode_and_keeps_the_others_proportions():
    x = run(tracked(1.0))
    got = masses(x)
    constant = masses(constant_scale_run())
    assert off_modes(x) < 0.05
    assert got[0] < 0.15 and abs(got[1] / got[2] - 1.0) < 0.15
    assert abs(got[1] / got[2] - 1.0) < abs(constant[1] / constant[2] - 1.0) / 3


def test_a_negative_far_from_every_mode_keeps_lambda_near_zero():
    """Paper-like settings (tau 0.25, delta 0.003, lambda0 15): only the first, very noisy steps can see any
    resemblance; after that lambda is ~0 and the samples are the positive's."""
    state = DynamicNegativeGuidance(15.0, 0.01, 0.25, 0.003, 1e-6, 0.99, per_element=False)
    sigmas = L.karras_sigmas(30)
    model = L.guided_model(state, denoisers(unwanted=FAR), 1.0, sigmas)
    gen = torch.Generator().manual_seed(0)
    x = L.sample_euler_ancestral(model, L.prior_noise(2000, 2, sigmas, gen), sigmas, "ve", gen)
    lam = state.history()["lambda"]
    assert lam.max() < 1.0 and lam[10:].max() < 0.05 and lam.mean() < 0.02
    near = tracked(15.0, 0.25, 0.003, p_min=1e-6, p_max=0.99)  # the same settings against mode A do act
    run(near, n=2000, steps=30)
    assert near.history()["lambda"][-1].max() > 10
    assert (masses(x) - masses(run(exact_term(0.0), n=2000, steps=30))).abs().max() < 0.03
