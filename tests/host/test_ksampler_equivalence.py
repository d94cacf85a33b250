"""Every KSampler-style node of the pack, at zero strength, returns core KSampler's latent bit for bit, for
every sampler, scheduler and denoise: same noise, same sigmas (incl. the samplers that drop the penultimate
sigma), same img2img and noise_mask handling. Both run in one graph through ComfyUI's own executor."""
import pytest
import torch

from hostlib import tiny_graph

SCHEDULERS = ("normal", "karras", "exponential", "beta")
# The samplers core KSampler gives a schedule of its own to, plus one of each other family.
SPECIAL = ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2", "euler", "euler_ancestral", "ddim", "dpmpp_2m")

# Zero strength of each node, and the core KSampler conditioning / cfg it must equal.
PERP_NEG = ("NegGuidePerpNegSampler", {"positive": ["pos", 0], "empty_conditioning": ["empty", 0], "cfg": 7.5,
                                       "negative": ["neg", 0], "neg_weight": 0.0},
            {"positive": ["pos", 0], "negative": ["empty", 0], "cfg": 7.5})
DNS = ("NegGuideDNSSampler", {"positive": ["pos", 0], "empty_conditioning": ["empty", 0], "dns_scale": 3.0},
       {"positive": ["empty", 0], "negative": ["pos", 0], "cfg": 4.0})
DNG = ("NegGuideDNGSampler", {"positive": ["pos", 0], "empty_conditioning": ["empty", 0], "unwanted": ["neg", 0],
                              "cfg": 7.5, "lambda0": 0.0, "prior": 0.01, "tau": 0.25, "delta": 0.003, "p_min": 1e-6,
                              "p_max": 0.99, "perpendicular": False, "per_element": True},
       {"positive": ["pos", 0], "negative": ["empty", 0], "cfg": 7.5})


def graph(host):
    """tiny_graph (an empty 8x8 latent for txt2img) plus "img2img": a VAE-encoded image with a 0.5 noise mask."""
    g = tiny_graph(host.ckpt)
    g["image"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xC04020}}
    g["encoded"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["ckpt", 2]}}
    g["mask"] = {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 64, "height": 64}}
    g["img2img"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["encoded", 0], "mask": ["mask", 0]}}
    return g


def add_cases(g, node, cases):
    """Add the node and a core KSampler for every (sampler, scheduler, denoise) case; seed i marks case i."""
    class_type, ours, core = node
    for i, (sampler, scheduler, denoise) in enumerate(cases):
        common = {"model": ["ckpt", 0], "seed": i, "steps": 2, "sampler_name": sampler, "scheduler": scheduler,
                  "denoise": denoise, "latent_image": ["latent" if denoise >= 1 else "img2img", 0]}
        g[f"ours{i}"] = {"class_type": class_type, "inputs": {**common, **ours}}
        g[f"core{i}"] = {"class_type": "KSampler", "inputs": {**common, **core}}
    return [f"{side}{i}" for i in range(len(cases)) for side in ("ours", "core")]


def matrix(samplers, schedulers=SCHEDULERS, denoises=(1.0, 0.6)):
    return [(s, sch, d) for s in samplers for sch in schedulers for d in denoises]


@pytest.fixture
def guider_calls(monkeypatch):
    """Every call of CFGGuider.sample (core KSampler's and, via super(), every NegGuide guider's) is recorded
    with what it was given and answered with its latent unchanged: no model runs, so all cases are cheap."""
    import comfy.samplers
    calls = {}

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False, seed=None):
        calls.setdefault(seed, []).append({
            "sampler": (type(sampler).__name__, sampler.sampler_function.__qualname__, sampler.extra_options,
                        sampler.inpaint_options),
            "tensors": [t.cpu() for t in (noise, latent_image, sigmas, denoise_mask) if t is not None]})
        return latent_image

    monkeypatch.setattr(comfy.samplers.CFGGuider, "sample", sample)
    return calls


@pytest.mark.parametrize("node, samplers", [(PERP_NEG, "all"), (DNS, SPECIAL), (DNG, SPECIAL)],
                         ids=["perp_neg", "dns", "dng"])
def test_node_gives_its_guider_what_core_ksampler_gives_its_own(host, guider_calls, node, samplers):
    """Every scheduler x denoise (1, 0.6 and the no-op 0), for every sampler on one node (all nodes share
    sample_with_guider) and the samplers with a sigma schedule of their own on the others: the node's guider
    gets the same sampler, sigmas, noise, latent and noise mask as core KSampler's. A fresh executor keeps
    the stubbed results out of the shared cache."""
    import comfy.samplers
    samplers = comfy.samplers.KSampler.SAMPLERS if samplers == "all" else samplers
    cases = matrix(samplers, denoises=(1.0, 0.6, 0.0))
    g = graph(host)
    host.execute(g, add_cases(g, node, cases), executor=host.new_executor())
    bad = [case for i, case in enumerate(cases) if not same_calls(guider_calls.get(i, []))]
    assert bad == []


def same_calls(calls):
    """One call by our node and one by core, with equal arguments."""
    return len(calls) == 2 and calls[0]["sampler"] == calls[1]["sampler"] and len(calls[0]["tensors"]) == len(
        calls[1]["tensors"]) and all(torch.equal(a, b) for a, b in zip(calls[0]["tensors"], calls[1]["tensors"]))


def mismatches(host, node, cases):
    """Sample every case with the node and with core KSampler; return the cases whose latents differ."""
    g = graph(host)
    out = host.execute(g, add_cases(g, node, cases))
    bad = []
    for i, case in enumerate(cases):
        a, b = out[f"ours{i}"][0], out[f"core{i}"][0]
        if not (a.keys() == b.keys() and torch.equal(a["samples"], b["samples"])):
            bad.append((case, (a["samples"] - b["samples"]).abs().max().item()))
    return bad


@pytest.mark.parametrize("node, cases", [(PERP_NEG, matrix(SPECIAL[:4], ("karras",))),
                                         (DNS, matrix(SPECIAL[:4], ("karras",), (0.6,))),
                                         (DNG, matrix(SPECIAL[:4], ("karras",), (0.6,)))],
                         ids=["perp_neg", "dns", "dng"])
def test_node_latent_is_core_ksamplers(host, node, cases):
    """End to end with the real model, mostly on the samplers with a sigma schedule of their own, txt2img and
    masked img2img. Kept small for 2 CPU cores: the test above covers the full matrix of what sampling gets."""
    assert mismatches(host, node, cases) == []


@pytest.mark.parametrize("name, value", [("sampler_name", "sample_bogus"), ("scheduler", "bogus_schedule")])
def test_unknown_sampler_or_scheduler_names_the_input_and_valid_choices(host, name, value):
    g = tiny_graph(host.ckpt)
    inputs = {"model": ["ckpt", 0], "latent_image": ["latent", 0], "seed": 1, "steps": 1, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1.0, **PERP_NEG[1], name: value}
    g["ours"] = {"class_type": PERP_NEG[0], "inputs": inputs}
    with pytest.raises(host.HostError, match=rf"{name}: unknown value '{value}'; pick one .* e\.g\. \w+, \w+"):
        host.execute(g, ["ours"])
