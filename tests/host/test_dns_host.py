"""DNS guider/sampler nodes in a real ComfyUI: exactly core CFG with swapped roles at cfg s + 1, hooks intact."""
import importlib

import pytest
import torch

from hostlib import tiny_graph

SAMPLING = dict(seed=5, steps=3, sampler_name="euler", scheduler="normal", denoise=1.0)


def latents(host, node, **sampling):
    g = tiny_graph(host.ckpt, batch=2)
    g["ks"] = {"class_type": node[0], "inputs": {"model": ["ckpt", 0], "latent_image": ["latent", 0], **node[1],
                                                  **dict(SAMPLING, **sampling)}}
    return host.execute(g, ["ks"])["ks"][0]["samples"]


def ours(scale):
    return ("NegGuideDNSSampler", {"positive": ["pos", 0], "empty_conditioning": ["empty", 0], "dns_scale": scale})


def core_swapped(cfg, **extra):
    return ("KSampler", {"positive": ["empty", 0], "negative": ["pos", 0], "cfg": cfg, **extra})


@pytest.mark.parametrize("scale", [0.0, 2.0, 7.5])
def test_dns_sampler_is_core_ksampler_with_swapped_prompts_at_s_plus_1(host, scale):
    assert torch.equal(latents(host, ours(scale)), latents(host, core_swapped(scale + 1)))


def test_dns_is_not_plain_cfg_and_depends_on_the_scale(host):
    dns = latents(host, ours(3.0))
    assert not torch.allclose(dns, latents(host, ("KSampler", {"positive": ["pos", 0], "negative": ["empty", 0], "cfg": 4.0})))
    assert not torch.allclose(dns, latents(host, ours(6.0)))


def test_dns_guider_node_with_sampler_custom_advanced_equals_core_cfg_guider(host):
    def run(guider):
        g = tiny_graph(host.ckpt)
        g["guider"] = guider
        g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 3}}
        g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
        g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "normal", "steps": 3, "denoise": 1.0}}
        g["sca"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["noise", 0], "guider": ["guider", 0],
                    "sampler": ["sampler", 0], "sigmas": ["sigmas", 0], "latent_image": ["latent", 0]}}
        return host.execute(g, ["sca"])["sca"][0]["samples"]

    a = run({"class_type": "NegGuideDNSGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
             "empty_conditioning": ["empty", 0], "dns_scale": 4.0}})
    b = run({"class_type": "CFGGuider", "inputs": {"model": ["ckpt", 0], "positive": ["empty", 0], "negative": ["pos", 0], "cfg": 5.0}})
    assert torch.equal(a, b)


@pytest.fixture
def parts(host):
    out = host.execute(tiny_graph(host.ckpt), ["ckpt", "pos", "empty", "latent"])
    return out["ckpt"][0], out["pos"][0], out["empty"][0], out["latent"][0]


def test_all_four_hooks_run_and_see_the_paper_formula(host, parts):
    import comfy.samplers

    dns_mod = importlib.import_module(f"{host.pack.__name__}.nodes.dns")
    sampling = importlib.import_module(f"{host.pack.__name__}.nodes._sampling")
    formula = importlib.import_module(f"{host.pack.__name__}.guiders.dns").dns
    model, pos, empty, latent = parts
    scale, seen = 3.0, []

    def calc(args):
        crossattn = [c[0]["model_conds"]["c_crossattn"].cond for c in args["conds"]]
        seen.append(("calc", torch.equal(crossattn[0], empty[0][0]), torch.equal(crossattn[1], pos[0][0])))
        return comfy.samplers.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])

    def pre(args):
        seen.append(("pre", args["cond_scale"]))
        return args["conds_out"]

    def cfg(args):
        seen.append(("cfg", args["cond_scale"]))
        return args["uncond"] + (args["cond"] - args["uncond"]) * args["cond_scale"]

    def post(args):
        expected = formula(args["cond_denoised"], args["uncond_denoised"], scale)
        seen.append(("post", torch.allclose(args["denoised"], expected, rtol=1e-4, atol=1e-4)))
        return args["denoised"]

    m = model.clone()
    m.set_model_sampler_calc_cond_batch_function(calc)
    m.set_model_sampler_pre_cfg_function(pre)
    m.set_model_sampler_cfg_function(cfg)
    m.set_model_sampler_post_cfg_function(post)
    sampling.sample_with_guider(dns_mod.dns_guider(m, pos, empty, scale), latent, 1, 2, "euler", "normal", 1.0)
    assert seen.count(("calc", True, True)) == 2  # empty in CFG's positive slot, the prompt in the negative slot
    assert seen.count(("pre", scale + 1)) == 2 and seen.count(("cfg", scale + 1)) == 2
    assert seen.count(("post", True)) == 2, seen


def test_scale_zero_never_evaluates_the_prompt(host, parts):
    """s = 0 is cfg 1: ComfyUI's cfg-1 shortcut drops the prompt branch, leaving the unconditional sample."""
    dns_mod = importlib.import_module(f"{host.pack.__name__}.nodes.dns")
    sampling = importlib.import_module(f"{host.pack.__name__}.nodes._sampling")
    import comfy.samplers

    model, pos, empty, latent = parts
    seen = []

    def calc(args):
        seen.append([c is None for c in args["conds"]])
        return comfy.samplers.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])

    m = model.clone()
    m.set_model_sampler_calc_cond_batch_function(calc)
    sampling.sample_with_guider(dns_mod.dns_guider(m, pos, empty, 0.0), latent, 1, 2, "euler", "normal", 1.0)
    assert seen == [[False, True]] * 2


def test_negative_scale_and_wrong_family_are_refused(host, parts):
    dns_mod = importlib.import_module(f"{host.pack.__name__}.nodes.dns")
    model, pos, empty, _ = parts
    with pytest.raises(ValueError, match="dns_scale"):
        dns_mod.dns_guider(model, pos, empty, -1.0)
    wide = [[torch.zeros(1, 77, 1024), {}]]
    with pytest.raises(ValueError, match="empty_conditioning"):
        dns_mod.dns_guider(model, pos, wide, 2.0)
