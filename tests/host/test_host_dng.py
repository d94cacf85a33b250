"""DNG guider, sampler and plot nodes in a real ComfyUI on the tiny random checkpoint."""
import pytest
import torch

from hostlib import spied, tiny_graph

SETTINGS = {"cfg": 7.5, "lambda0": 15.0, "prior": 0.01, "tau": 0.25, "delta": 0.003, "p_min": 1e-6, "p_max": 0.99,
            "perpendicular": False, "per_element": True}


def history(guider):
    """The DNG diagnostics of a NegGuide guider (its technique may be wrapped, e.g. by Perpendicular)."""
    return next(t for t in guider.technique.parts() if hasattr(t, "history")).history()


def dng_guider(**overrides):
    inputs = {"model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0],
              "unwanted": ["neg", 0], **SETTINGS, **overrides}
    return {"class_type": "NegGuideDNGGuider", "inputs": inputs}


def graph(host, sampler="euler_ancestral", seed=3, steps=3, batch=1, **overrides):
    g = tiny_graph(host.ckpt, batch=batch)
    g["guider"] = dng_guider(**overrides)
    g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
    g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "normal",
                                                              "steps": steps, "denoise": 1.0}}
    g["sca"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["noise", 0], "guider": ["guider", 0],
                "sampler": ["sampler", 0], "sigmas": ["sigmas", 0], "latent_image": ["latent", 0]}}
    g["plot"] = {"class_type": "NegGuideDNGPlot", "inputs": {"guider": ["guider", 0], "latent": ["sca", 0],
                                                             "width": 320, "height": 320}}
    return g


def run(host, outputs=("sca", "plot", "guider"), **kw):
    out = host.execute(graph(host, **kw), list(outputs))
    return out["sca"][0]["samples"], out["plot"][0], out["guider"][0]


@pytest.mark.parametrize("sampler", ["euler_ancestral", "euler", "dpmpp_2m", "dpmpp_sde", "heun"])
def test_runs_without_nan_and_plots(host, sampler):
    samples, plot, guider = run(host, sampler=sampler, batch=2)
    assert samples.shape == (2, 4, 8, 8) and torch.isfinite(samples).all()
    hist = history(guider)
    levels = {"dpmpp_sde": 5, "heun": 3}.get(sampler, 3)  # dpmpp_sde adds a mid-step level between steps
    assert hist["p"].shape == (levels, 2) and torch.isfinite(hist["lambda"]).all()
    assert torch.allclose(hist["p"][0], torch.full((2,), 0.01))  # staggered: the first step uses the prior
    assert plot.shape == (1, 320, 320, 3) and plot.min() >= 0 and plot.max() <= 1 and plot.std() > 0


def test_three_queued_prompts_through_the_cached_guider_are_identical(host):
    """The guider node is cached across prompts; its per-run state must not leak from one run to the next."""
    first, _, g1 = run(host, seed=5)
    other, _, g2 = run(host, seed=6)  # only the noise changed: the guider object is reused
    third, _, g3 = run(host, seed=5)
    assert g1 is g2 is g3
    assert torch.equal(first, third) and not torch.allclose(first, other)
    again = run(host, seed=5, lambda0=14.0)[0]
    assert not torch.equal(first, again)  # lambda0 matters, so equality above is not trivial


def direct_sample(guider, noise, sampler="euler", steps=4):
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(guider.model_patcher.get_model_object("model_sampling"), "normal", steps)
    return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object(sampler), sigmas,
                         disable_pbar=True, seed=0)


def test_batch_of_four_equals_four_single_runs(host):
    g = tiny_graph(host.ckpt)
    g["guider"] = dng_guider(tau=1e-4, delta=0.0, per_element=False)  # the random model's evidence is huge:
    # a tiny tau keeps p off the clamps, so the per-sample values really differ
    guider = host.execute(g, ["guider"])["guider"][0]
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    batched = direct_sample(guider, noise)
    p_batched = history(guider)["p"]
    for i in range(4):
        single = direct_sample(guider, noise[i:i + 1])
        scale = batched[i].abs().max()
        assert (single[0] - batched[i]).abs().max() <= 1e-4 * scale
        assert torch.allclose(history(guider)["p"][:, 0], p_batched[:, i], rtol=1e-3, atol=1e-7)
    assert p_batched[-1].log().std() > 1e-3


def test_all_three_conditions_in_one_calc_cond_batch_call(host):
    calls = []
    g = tiny_graph(host.ckpt)
    g["guider"] = dng_guider(correction="off")  # the divergence probe's extra call: test_dng_correction_host.py
    guider = host.execute(g, ["guider"])["guider"][0]
    guider.model_options = spied(guider.model_options, lambda call: calls.append(len(call.conds)))
    direct_sample(guider, torch.randn(1, 4, 8, 8), steps=2)
    assert calls == [3, 3]


def test_lambda0_zero_is_core_cfg(host):
    g = tiny_graph(host.ckpt)
    g["ours"] = dng_guider(lambda0=0.0)
    g["core"] = {"class_type": "CFGGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                                                       "negative": ["empty", 0], "cfg": 7.5}}
    out = host.execute(g, ["ours", "core"])
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    a, b = direct_sample(out["ours"][0], noise), direct_sample(out["core"][0], noise)
    assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_ksampler_node_returns_latent_and_plot(host):
    g = tiny_graph(host.ckpt, batch=2)
    inputs = dict(dng_guider(perpendicular=True)["inputs"], latent_image=["latent", 0], seed=1, steps=3,
                  sampler_name="euler_ancestral", scheduler="karras", denoise=1.0)
    g["ks"] = {"class_type": "NegGuideDNGSampler", "inputs": inputs}
    latent, plot = host.execute(g, ["ks"])["ks"]
    assert latent["samples"].shape == (2, 4, 8, 8) and torch.isfinite(latent["samples"]).all()
    assert plot.shape == (1, 560, 640, 3)


@pytest.mark.parametrize("overrides, words", [
    ({"p_min": 0.5, "p_max": 0.4}, "p_min"),
    ({"prior": 1.0}, "prior"),
    ({"lambda0": -1.0}, "lambda0"),
])
def test_bad_settings_are_clear_errors(host, overrides, words):
    with pytest.raises(host.HostError, match=words):
        host.execute(graph(host, **overrides), ["sca"])


def test_nan_latent_is_a_clear_error(host):
    g = graph(host)
    g["bad"] = {"class_type": "LatentMultiply", "inputs": {"samples": ["latent", 0], "multiplier": float("nan")}}
    g["sca"]["inputs"]["latent_image"] = ["bad", 0]
    g["latent"]["inputs"]["width"] = 72  # a different latent, so no cached result hides the error
    with pytest.raises(host.HostError, match="NaN"):
        host.execute(g, ["sca"])


def test_plot_before_sampling_and_wrong_guider_are_clear_errors(host):
    g = tiny_graph(host.ckpt)
    g["guider"] = dng_guider(tau=0.3)
    g["core"] = {"class_type": "CFGGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                                                       "negative": ["empty", 0], "cfg": 7.5}}
    g["plot"] = {"class_type": "NegGuideDNGPlot", "inputs": {"guider": ["guider", 0], "latent": ["latent", 0],
                                                             "width": 320, "height": 320}}
    with pytest.raises(host.HostError, match="not sampled yet"):
        host.execute(g, ["plot"])
    g["plot"]["inputs"]["guider"] = ["core", 0]
    with pytest.raises(host.HostError, match="DNG Guider"):
        host.execute(g, ["plot"])
