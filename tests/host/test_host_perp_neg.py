"""Perp-Neg guider and sampler nodes in a real ComfyUI, against core's CFGGuider and PerpNegGuider."""
import pytest
import torch

from hostlib import spied, tiny_graph

STEPS = dict(steps=3, sampler_name="euler", scheduler="normal")


def advanced(g, guider_id, seed=3):
    """Add SamplerCustomAdvanced nodes driven by guider_id; returns the id of the sampler node."""
    g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
    g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": STEPS["sampler_name"]}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": g[guider_id]["inputs"]["model"],
                   "scheduler": STEPS["scheduler"], "steps": STEPS["steps"], "denoise": 1.0}}
    g["sca"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["noise", 0], "guider": [guider_id, 0],
                "sampler": ["sampler", 0], "sigmas": ["sigmas", 0], "latent_image": ["latent", 0]}}
    return "sca"


def ours(model=("ckpt", 0), cfg=7.5, neg_weight=1.5, negative="neg", **extra):
    inputs = {"model": list(model), "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "cfg": cfg,
              "neg_weight": neg_weight, **extra}
    if negative:
        inputs["negative"] = [negative, 0]
    return {"class_type": "NegGuidePerpNegGuider", "inputs": inputs}


def core_cfg(model=("ckpt", 0), cfg=7.5):
    return {"class_type": "CFGGuider", "inputs": {"model": list(model), "positive": ["pos", 0],
                                                  "negative": ["empty", 0], "cfg": cfg}}


def run(host, guider, batch=1, patch=None):
    g = tiny_graph(host.ckpt, batch=batch)
    if patch:
        g["patch"] = {"class_type": patch[0], "inputs": {"model": ["ckpt", 0], **patch[1]}}
        guider["inputs"]["model"] = ["patch", 0]
    g["guider"] = guider
    return host.execute(g, [advanced(g, "guider")])["sca"][0]["samples"]


def test_zero_weight_is_exactly_core_cfg(host):
    assert torch.equal(run(host, ours(neg_weight=0.0)), run(host, core_cfg()))


def test_weight_changes_result(host):
    assert not torch.allclose(run(host, ours(neg_weight=1.5)), run(host, core_cfg()), atol=1e-3)


def test_single_negative_matches_core_perpneg(host):
    core = {"class_type": "PerpNegGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
            "negative": ["neg", 0], "empty_conditioning": ["empty", 0], "cfg": 7.5, "neg_scale": 1.5}}
    a, b = run(host, ours(neg_weight=1.5)), run(host, core)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), (a - b).abs().max()


@pytest.mark.parametrize("patch", [("RescaleCFG", {"multiplier": 0.7}), ("CFGZeroStar", {}),
                                   ("APG", {"eta": 0.5, "norm_threshold": 5.0, "momentum": -0.5})])
def test_hooks_change_result_exactly_like_core(host, patch):
    """cfg function (RescaleCFG), post-cfg (CFGZeroStar), pre-cfg (APG): same effect as on CFGGuider."""
    assert torch.equal(run(host, ours(neg_weight=0.0), patch=patch), run(host, core_cfg(), patch=patch))
    assert not torch.allclose(run(host, ours(neg_weight=0.0), patch=patch), run(host, core_cfg()), rtol=1e-4, atol=1e-4)
    # and with an active negative the hook still acts
    assert not torch.allclose(run(host, ours(), patch=patch), run(host, ours()), atol=1e-4)


def test_negative_equal_to_positive_is_plain_cfg(host):
    assert torch.allclose(run(host, ours(negative="pos", neg_weight=3.0)), run(host, core_cfg()), rtol=1e-4, atol=1e-4)


def test_zero_positive_direction_stays_finite(host):
    g = ours(neg_weight=2.0)
    g["inputs"]["positive"] = ["empty", 0]
    assert torch.isfinite(run(host, g)).all()


def close(a, b, tol=1e-4):
    """Equal to within tol of the result's scale: the random model's latents reach ~100, and a batched
    convolution sums in another order than a single one (float noise ~1e-6 of the scale)."""
    return (a - b).abs().max() <= tol * b.abs().max()


def guider_object(host, **kw):
    g = tiny_graph(host.ckpt)
    g["guider"] = ours(**kw)
    return host.execute(g, ["guider"])["guider"][0]


def direct_sample(guider, noise, steps=3):
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(guider.model_patcher.get_model_object("model_sampling"), "normal", steps)
    return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                         disable_pbar=True, seed=0)


def test_batch_of_four_equals_four_single_runs(host):
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    guider = guider_object(host)
    batched = direct_sample(guider, noise)
    singles = torch.cat([direct_sample(guider, noise[i:i + 1]) for i in range(4)])
    assert close(batched, singles), (batched - singles).abs().max()


def test_core_perpneg_mixes_the_batch(host):
    """Why per-sample matters: core's projection over the whole batch breaks the same check."""
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    g = tiny_graph(host.ckpt)
    g["guider"] = {"class_type": "PerpNegGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                   "negative": ["neg", 0], "empty_conditioning": ["empty", 0], "cfg": 7.5, "neg_scale": 1.5}}
    guider = host.execute(g, ["guider"])["guider"][0]
    batched = direct_sample(guider, noise)
    singles = torch.cat([direct_sample(guider, noise[i:i + 1]) for i in range(4)])
    assert not close(batched, singles)


def test_all_conditions_in_one_calc_cond_batch_call(host):
    calls = []
    g = tiny_graph(host.ckpt)
    g["more"] = {"class_type": "NegGuideAddNegative", "inputs": {"conditioning": ["pos", 0], "weight": 0.5}}
    g["guider"] = ours(more_negatives=["more", 0])
    guider = host.execute(g, ["guider"])["guider"][0]
    guider.model_options = spied(guider.model_options, lambda call: calls.append(len(call.conds)))
    direct_sample(guider, torch.randn(1, 4, 8, 8), steps=2)
    assert calls == [4, 4]  # positive, empty and two negatives, once per model evaluation


def test_chain_of_negatives_equals_sum_of_terms(host):
    """Two chained negatives act like the formula's sum: w=1 on neg plus w=0 on a second is the one-negative result."""
    g_one = ours(neg_weight=1.0)
    g = tiny_graph(host.ckpt)
    g["more"] = {"class_type": "NegGuideAddNegative", "inputs": {"conditioning": ["pos", 0], "weight": 0.0}}
    g["guider"] = ours(neg_weight=1.0, more_negatives=["more", 0])
    two = host.execute(g, [advanced(g, "guider")])["sca"][0]["samples"]
    assert torch.equal(two, run(host, g_one))


def test_ksampler_node_matches_guider_and_core_ksampler(host):
    g = tiny_graph(host.ckpt)
    common = {"model": ["ckpt", 0], "positive": ["pos", 0], "latent_image": ["latent", 0], "seed": 3,
              "cfg": 7.5, "denoise": 1.0, **STEPS}
    g["ours"] = {"class_type": "NegGuidePerpNegSampler",
                 "inputs": {**common, "empty_conditioning": ["empty", 0], "neg_weight": 0.0, "negative": ["neg", 0]}}
    g["core"] = {"class_type": "KSampler", "inputs": {**common, "negative": ["empty", 0]}}
    out = host.execute(g, ["ours", "core"])
    assert torch.equal(out["ours"][0]["samples"], out["core"][0]["samples"])


def test_bad_inputs_give_named_errors(host):
    g = tiny_graph(host.ckpt)
    g["guider"] = ours(neg_weight=-1.0)
    with pytest.raises(host.HostError, match="neg_weight"):
        host.execute(g, ["guider"])
    g["guider"] = ours()
    del g["guider"]["inputs"]["empty_conditioning"]
    with pytest.raises(host.HostError, match="empty_conditioning"):
        host.execute(g, ["guider"])
    node = host.nodes.NODE_CLASS_MAPPINGS["NegGuidePerpNegGuider"]
    model = host.execute(tiny_graph(host.ckpt), ["ckpt"])["ckpt"][0]
    sd15 = [[torch.zeros(1, 77, 768), {}]]
    sdxl = [[torch.zeros(1, 77, 2048), {"pooled_output": torch.zeros(1, 1280)}]]
    with pytest.raises(ValueError, match="negative.*different model family"):
        node.execute(model=model, positive=sd15, empty_conditioning=sd15, cfg=7.5, negative=sdxl, neg_weight=1.0)
    with pytest.raises(ValueError, match="positive.*different model family"):
        node.execute(model=model, positive=sdxl, empty_conditioning=sd15, cfg=7.5)
    bad = [{"conditioning": sd15, "weight": [1.0, 2.0, 3.0], "label": "view negatives"}]
    guider = node.execute(model=model, positive=sd15, empty_conditioning=sd15, cfg=7.5, more_negatives=bad).args[0]
    with pytest.raises(ValueError, match="view negatives: 3 per-sample weights for a latent batch of 2"):
        direct_sample(guider, torch.randn(2, 4, 8, 8))
