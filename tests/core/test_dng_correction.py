"""DNG's divergence correction (docs/method.md, docs/dng.md) on exact scores and on synthetic transitions:
deterministic samplers track the exact posterior, ancestral ones do not get worse, the noise share is read off
the observed step (eta, s_noise), and unreadable or missing inputs fall back as documented."""
import functools
import math

import pytest
import torch

from negguide.guiders.dng import (DynamicNegativeGuidance, PosteriorTracker, divergence_weight, hutchinson_gap,
                                  transition)
from negguide.guiders.technique import Run, Step, probed
from negguide.lab import gmm as L

UNCOND = L.GaussianMixture([[-1.5, 0.0], [1.5, 0.0], [0.0, 6.0], [6.0, -3.0], [-6.0, -3.0]], 0.5,
                           [0.25, 0.2, 0.2, 0.2, 0.15])
POS, NEG = UNCOND.subset([0, 1, 2]), UNCOND.subset([0])


def denoisers(kind):
    return {"positive": L.denoiser(POS, kind), "empty": L.denoiser(UNCOND, kind), "unwanted": L.denoiser(NEG, kind)}


@functools.cache
def tracking(sampler, kind, correction, n=500, steps=30, eta=1.0, s_noise=1.0):
    """(mean |p - p_exact| over the evaluations, final agreement, measured eta^2 over the run) at tau 1, delta 0."""
    dng = DynamicNegativeGuidance(0.0, float(POS.weights[0]), 1.0, 0.0, 1e-12, 1 - 1e-6, kind, per_element=False,
                                  correction=correction)
    rec = []

    def record(x, sigma):
        rec.append((dng.tracker.log_ps[-1].double().exp(), L.posterior_mass(POS, [0], x, sigma, kind)))

    sigmas = L.karras_sigmas(steps, 0.03, 14.6) if kind == "ve" else L.flow_sigmas(steps)
    model = L.guided_model(dng, denoisers(kind), 1.0, sigmas, kind, record)
    gen = torch.Generator().manual_seed(0)
    extra = {"eta": eta, "s_noise": s_noise} if sampler == "euler_ancestral" else {}
    L.SAMPLERS[sampler](model, L.prior_noise(n, 2, sigmas, gen), sigmas, kind, gen, **extra)
    err = sum(float((t - e).abs().mean()) for t, e in rec) / len(rec)
    agree = float(((rec[-1][0] > 0.5) == (rec[-1][1] > 0.5)).double().mean())
    return err, agree, float(dng.history()["eta2"][5:].nanmean())


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
def test_deterministic_samplers_track_the_exact_posterior_with_the_correction(sampler):
    err_off, agree_off, eta2 = tracking(sampler, "ve", "off")
    err, agree, _ = tracking(sampler, "ve", "auto")
    assert eta2 < 0.02  # no noise injected, and the tracker sees it
    assert agree_off < 0.8  # the problem: near chance without the correction
    assert agree >= 0.90 and err < 0.6 * err_off, (err_off, err, agree_off, agree)


@pytest.mark.parametrize("kind", ["ve", "const"])
def test_ancestral_samplers_do_not_get_worse(kind):
    err_off, agree_off, eta2 = tracking("euler_ancestral", kind, "off")
    err, agree, _ = tracking("euler_ancestral", kind, "auto")
    assert abs(eta2 - 1) < 0.1
    assert err <= err_off + 0.005 and agree >= agree_off - 0.01, (err_off, err, agree_off, agree)


def test_partial_noise_is_measured_and_corrected():
    """eta 0.5 and s_noise 0.7 inject a quarter / half of the ancestral noise: measured from the steps, and the
    correction (weighted by 1 - eta^2) still helps. s_noise 1.2 (more than ancestral noise) gets no correction."""
    for eta, s_noise, share in ((0.5, 1.0, 0.25), (1.0, 0.7, 0.49)):
        err_off, agree_off, eta2 = tracking("euler_ancestral", "ve", "off", eta=eta, s_noise=s_noise)
        err, agree, _ = tracking("euler_ancestral", "ve", "auto", eta=eta, s_noise=s_noise)
        assert abs(eta2 - share) < 0.05, (eta, s_noise, eta2)
        assert err < 0.7 * err_off and agree > agree_off + 0.1, (eta, s_noise, err_off, err, agree_off, agree)
    err_off, _, eta2 = tracking("euler_ancestral", "ve", "off", s_noise=1.2)
    err, _, _ = tracking("euler_ancestral", "ve", "auto", s_noise=1.2)
    assert eta2 > 1.3 and abs(err - err_off) < 0.01


def ancestral_step(x, d, sp, sn, kind, eta, s_noise, gen):
    """One k-diffusion ancestral step (VE: euler_ancestral; flow: euler_ancestral_RF), as lab/gmm.py draws it."""
    sigmas = torch.tensor([sp, sn, 0.0], dtype=torch.float64)
    return L.sample_euler_ancestral(lambda *_: d, x, sigmas[:2], kind, gen, eta, s_noise) if sn > 0 else d


@pytest.mark.parametrize("kind", ["ve", "const"])
@pytest.mark.parametrize("eta, s_noise", [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (1.0, 0.8)])
def test_noise_share_is_read_off_one_observed_step(kind, eta, s_noise):
    """A 4x16x16 latent: one transition is enough, whatever the sampler is called. The reference share is the
    step's own noise variance over the ancestral kernel's v."""
    gen = torch.Generator().manual_seed(1)
    sp, sn = (3.0, 2.4) if kind == "ve" else (0.6, 0.5)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64, generator=gen) * sp
    d = torch.randn(2, 4, 16, 16, dtype=torch.float64, generator=gen)
    tr = PosteriorTracker(tau=1.0, delta=0.0, kind=kind, per_element=False, correction="auto")
    tr.reset()
    tr.update(x, torch.tensor(sp), d, d)
    tr.guided(d)
    x_now = ancestral_step(x, d, sp, sn, kind, eta, s_noise, gen)
    tr.update(x_now, torch.tensor(sn), d, d)
    v = float(transition(torch.tensor([sp]), torch.tensor([sn]), kind)[2])
    if kind == "ve":
        want = eta ** 2 * s_noise ** 2
    else:  # k-diffusion's RF step: its own renoise variance, in VE coordinates like the tracker
        down = sn * (1 + (sn / sp - 1) * eta)
        want = s_noise ** 2 * (sn ** 2 - (down * (1 - sn) / (1 - down)) ** 2) / v
    assert torch.allclose(tr.last_eta2().double(), torch.full((2,), want, dtype=torch.float64), atol=0.08), want


def test_correction_is_scaled_like_the_evidence():
    """log p gains -(1 - eta^2) c div * tau (* N_REF / N per element), c = (1 - r) / 2 (VE) or the VE value at
    sigma / (1 - sigma) times 1 - sigma_prev (flow). Deterministic step (euler), so eta^2 = 0."""
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    d_pos, d_neg = torch.zeros_like(x), 0.01 * torch.ones_like(x)  # weak evidence: p stays off the clamps
    div = torch.tensor([0.03, -0.05])
    for kind, sp, sn in (("ve", 2.0, 1.5), ("const", 0.7, 0.6)):
        for tau, per_element in ((1.0, False), (0.25, True)):
            x_now = x + (sn - sp) / sp * (x - d_pos)  # an euler step along the guided D (= D_pos at lambda0 0)
            incs = []
            for correction in ("off", "on"):
                tr = PosteriorTracker(0.3, tau, 0.0, 1e-9, 1 - 1e-9, kind, per_element, correction)
                tr.update(x, torch.tensor(sp), d_neg, d_pos, div)
                incs.append(tr.update(x_now, torch.tensor(sn), d_neg, d_pos))
            c = float(divergence_weight(torch.tensor([sp]), torch.tensor([sn]), kind))
            scale = tau * (4 * 64 * 64 / x[0].numel() if per_element else 1.0)
            assert torch.allclose(incs[1] - incs[0], -c * div * scale, rtol=1e-4), (kind, tau, per_element)
    r = 1.5 ** 2 / 2.0 ** 2
    assert math.isclose(float(divergence_weight(torch.tensor([2.0]), torch.tensor([1.5]))), (1 - r) / 2)


def test_hutchinson_probe_is_unbiased_for_the_divergence_gap():
    """For linear denoisers D_c(x) = A_c x: z^T (A_neg - A_pos) z, exactly the trace gap when the gap is diagonal,
    and unbiased (mean over probes) when it is not."""
    gen = torch.Generator().manual_seed(3)
    a_pos, a_neg = torch.randn(16, 16, generator=gen), torch.randn(16, 16, generator=gen)
    x = torch.randn(1, 16, generator=gen)
    want = float(torch.trace(a_neg - a_pos))
    e = torch.tensor([0.01])
    got = []
    for _ in range(4000):
        z = torch.randint(0, 2, (16,), generator=gen).float() * 2 - 1
        gap = lambda y: y @ a_neg.T - y @ a_pos.T  # noqa: E731
        got.append(float(hutchinson_gap(gap(x), gap(x + e * z), z, e)))
    assert abs(sum(got) / len(got) - want) < 0.1 * (torch.tensor(got).std() + 1)
    diag = torch.diag(torch.randn(16, generator=gen))
    z = torch.randint(0, 2, (16,), generator=gen).float() * 2 - 1
    assert math.isclose(float(hutchinson_gap(x @ diag, (x + e * z) @ diag, z, e)), float(torch.trace(diag)), rel_tol=1e-3)


def run_dng(correction, x0, sigmas, d_of, drop_probe=False, kind="ve"):
    """Drive a DNG technique by hand through an euler run; drop_probe plays a host that cannot evaluate probes."""
    dng = DynamicNegativeGuidance(1.0, 0.3, 1.0, 0.0, 1e-9, 1 - 1e-9, kind, per_element=False, correction=correction)
    dng.reset(Run(sigmas, kind))
    x, probes = x0, 0
    for sp, sn in zip(sigmas[:-1], sigmas[1:]):
        step = Step(x, sp, sigmas, 1.0)
        d = {"positive": d_of(x, 0), "empty": d_of(x, 1), "unwanted": d_of(x, 2)}
        probe = dng.probe(step)
        if probe is not None:
            probes += 1
            if not drop_probe:
                d.update({probed(n): d_of(x + probe.offset, {"positive": 0, "unwanted": 2}[n]) for n in probe.names})
        out = d["empty"] + (d["positive"] - d["empty"]) + dng.term(step, d)
        x = x + (sn - sp) / sp * (x - out)
    return dng.history(), probes


def toy_denoiser(x, c):
    """Three smooth, different denoisers, so the divergence gap is not zero."""
    return torch.tanh(x * (0.5 + 0.3 * c)) + 0.1 * c


def test_unreadable_noise_and_missing_probes_fall_back_without_a_crash():
    sigmas = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    x0 = torch.randn(2, 1, generator=torch.Generator().manual_seed(4)) * 4  # one element: no degree of freedom
    off, probes_off = run_dng("off", x0, sigmas, toy_denoiser)
    auto, _ = run_dng("auto", x0, sigmas, toy_denoiser)
    on, probes_on = run_dng("on", x0, sigmas, toy_denoiser)
    assert probes_off == 0 and probes_on == 3  # never at the last level: no transition follows it
    assert torch.isnan(auto["eta2"]).all()  # the noise share of a 1-element step cannot be read
    assert torch.equal(auto["p"], off["p"])  # auto then adds nothing
    assert not torch.allclose(on["p"], off["p"]) and torch.isfinite(on["p"]).all()  # on assumes eta = 0
    x0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(5)) * 4
    dropped, probes = run_dng("on", x0, sigmas, toy_denoiser, drop_probe=True)
    assert probes == 3 and torch.equal(dropped["p"], run_dng("off", x0, sigmas, toy_denoiser)[0]["p"])
    bad = lambda x, c: toy_denoiser(x, c) * (float("nan") if c == 2 else 1.0)  # noqa: E731
    nan_run, _ = run_dng("on", x0, sigmas, bad)
    assert torch.isfinite(nan_run["p"]).all() and torch.isfinite(nan_run["lambda"]).all()


def test_bad_correction_value_names_the_input():
    with pytest.raises(ValueError, match="correction"):
        DynamicNegativeGuidance(correction="yes")


def test_poor_tracking_is_reported_in_the_plot():
    """euler without the correction: the plot's note is a warning; with it, an info line; ancestral: no note."""
    from negguide.support.plot import dng_chart
    sigmas = L.karras_sigmas(8, 0.03, 14.6)
    notes = {}
    for sampler, correction in (("euler", "off"), ("euler", "auto"), ("euler_ancestral", "off")):
        dng = DynamicNegativeGuidance(1.0, 0.3, 1.0, 0.0, kind="ve", per_element=False, correction=correction)
        model = L.guided_model(dng, denoisers("ve"), 1.0, sigmas)
        gen = torch.Generator().manual_seed(6)
        L.SAMPLERS[sampler](model, L.prior_noise(200, 2, sigmas, gen), sigmas, "ve", gen)
        notes[sampler, correction] = dng.tracking_note()
        h = dng.history()
        image = dng_chart(h["sigma"].tolist(), h["p"].tolist(), h["lambda"].tolist(), 1.0, 320, 320, *notes[sampler, correction])
        assert image.size == (320, 320)
    assert notes["euler", "off"][1] and "correction off (use auto)" in notes["euler", "off"][0]
    assert not notes["euler", "auto"][1] and "correction on" in notes["euler", "auto"][0]
    assert notes["euler_ancestral", "off"] == ("", False)
