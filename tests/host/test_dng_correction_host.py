"""DNG's divergence correction in a real ComfyUI (tiny random checkpoint): euler moves the posterior, stays finite,
a batch equals its single runs, the probe rows go through one extra batched call, the noise share is measured."""
import torch

from hostlib import spied, tiny_graph

SETTINGS = {"cfg": 7.5, "lambda0": 15.0, "prior": 0.01, "tau": 1e-4, "delta": 0.0, "p_min": 1e-6, "p_max": 0.99,
            "perpendicular": False, "per_element": False}  # the random model's evidence is huge: a tiny tau keeps p
# off the clamps, so per-sample values and the correction's effect are visible


def dng_guider(host, **overrides):
    g = tiny_graph(host.ckpt)
    g["guider"] = {"class_type": "NegGuideDNGGuider", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "unwanted": ["neg", 0],
        **SETTINGS, **overrides}}
    return host.execute(g, ["guider"])["guider"][0]


def sample(guider, noise, sampler="euler", steps=6):
    import comfy.samplers  # ComfyUI is importable only once the host fixture has booted it
    sigmas = comfy.samplers.calculate_sigmas(guider.model_patcher.get_model_object("model_sampling"), "normal", steps)
    return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object(sampler), sigmas,
                         disable_pbar=True, seed=0)


def history(guider):
    return next(t for t in guider.technique.parts() if hasattr(t, "history")).history()


def test_euler_moves_the_posterior_stays_finite_and_a_batch_equals_its_single_runs(host):
    guider = dng_guider(host)  # correction left at its default, auto
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    batched = sample(guider, noise)
    hist = history(guider)
    assert torch.isfinite(batched).all() and torch.isfinite(hist["p"]).all() and torch.isfinite(hist["lambda"]).all()
    assert hist["eta2"][1:].max() < 0.05  # euler injects no noise, and the tracker sees it from the steps
    p_auto = hist["p"]
    assert (p_auto[-1].log() - p_auto[0].log()).abs().min() > 0.03  # moved away from the prior (tiny tau)
    for i in range(3):
        single = sample(guider, noise[i:i + 1])
        assert (single[0] - batched[i]).abs().max() <= 1e-4 * batched[i].abs().max()
        assert torch.allclose(history(guider)["p"][:, 0], p_auto[:, i], rtol=1e-3, atol=1e-7)


def test_probe_rows_ride_in_one_extra_batched_call_and_skip_ancestral_steps(host):
    calls = []

    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    rows = {}
    for sampler, correction in (("euler", "auto"), ("euler", "off"), ("euler_ancestral", "auto")):
        guider = dng_guider(host, correction=correction)
        guider.model_options = spied(guider.model_options, lambda c: calls.append((len(c.conds), float(c.x.abs().sum()))))
        calls.clear()
        out = sample(guider, noise, sampler, steps=4)
        assert torch.isfinite(out).all()
        rows[sampler, correction] = [n for n, _ in calls]
        if correction == "auto" and sampler == "euler":
            assert all(calls[i][1] != calls[i + 1][1] for i in range(0, len(calls) - 1, 2))  # probes at x + e z
    assert rows["euler", "off"] == [3, 3, 3, 3]
    assert rows["euler", "auto"] == [3, 2, 3, 2, 3, 2, 3]  # positive + unwanted at x + e z; none at the last level
    # ancestral: once the first transition has shown the full noise (seen at the 2nd level), auto stops probing
    assert rows["euler_ancestral", "auto"] == [3, 2, 3, 2, 3, 3]


def test_correction_changes_the_deterministic_run_but_not_when_off(host):
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    p = {}
    for correction in ("off", "auto", "on"):
        guider = dng_guider(host, correction=correction)
        sample(guider, noise)
        p[correction] = history(guider)["p"]
    assert torch.equal(p["auto"], p["on"])  # euler: eta^2 = 0 is measured, so auto and on agree
    assert (p["auto"] - p["off"]).abs().max() > 1e-6 * p["off"].abs().max()
