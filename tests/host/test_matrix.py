"""Every guider node x every sampler of the host (comfy.samplers.KSampler.SAMPLERS): the result is finite and the
same, bit for bit, when sampled twice with the same noise and seed (ancestral and SDE samplers included: their
noise comes from the seed). The guider objects are built once by ComfyUI's executor and sampled in-process on a
tiny latent with 2 steps. The samplers the issue lists always run; the rest (cfg_pp, _gpu and other variants of
the same solvers) are marked `slow` (deselect with -m "not slow")."""
import pytest
import torch

from hostlib import tiny_graph

CORE = ("euler", "euler_ancestral", "heun", "heunpp2", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive",
        "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm", "lcm", "ipndm", "deis",
        "res_multistep", "er_sde", "seeds_2", "sa_solver", "gradient_estimation", "ddim", "uni_pc", "uni_pc_bh2")
# dpm_adaptive picks its own steps: at its default tolerances the random model's rough guided field costs it
# hundreds of evaluations (3 min for one case). Loose tolerances run the same solver code in a few steps.
OPTIONS = {"dpm_adaptive": {"order": 2, "rtol": 1.0, "atol": 1.0, "h_init": 0.5}}
VIEWS = 2  # the view guider's per-image negative weights need a latent batch of exactly this many images

COMMON = {"model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0]}
PERP = {**COMMON, "cfg": 7.5, "negative": ["neg", 0], "neg_weight": 1.5}
DNG = {**COMMON, "unwanted": ["neg", 0], "cfg": 7.5, "lambda0": 15.0, "prior": 0.01, "tau": 0.25, "delta": 0.003,
       "p_min": 1e-6, "p_max": 0.99, "perpendicular": False, "per_element": True, "correction": "auto"}
# Every guider a node of the pack builds, as (class_type, inputs); "views" needs the batch of VIEWS images.
GUIDERS = {
    "perp_neg": ("NegGuidePerpNegGuider", PERP),
    "perp_neg_k2_window": ("NegGuidePerpNegGuider", {**PERP, "more_negatives": ["more", 0], "negative_end": 0.6}),
    "perp_neg_score_clip": ("NegGuidePerpNegGuider", {**PERP, "score_clip_start": 2.0, "score_clip_end": 8.0}),
    "dns": ("NegGuideDNSGuider", {**COMMON, "dns_scale": 7.5}),
    "dng": ("NegGuideDNGGuider", DNG),
    "dng_perpendicular": ("NegGuideDNGGuider", {**DNG, "perpendicular": True}),
    "views": ("NegGuidePerpNegGuider", {**PERP, "positive": ["view_cond", 0], "empty_conditioning": ["view_cond", 1],
                                        "more_negatives": ["view_cond", 2]}),
}


def guider_graph(ckpt, model=("ckpt", 0)):
    """tiny_graph plus one node per GUIDERS entry (ids as its keys), all on `model`."""
    g = tiny_graph(ckpt, negative="a dog")
    g["neg2"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}}
    g["more"] = {"class_type": "NegGuideAddNegative", "inputs": {"conditioning": ["neg2", 0], "weight": 0.8}}
    g["view_cond"] = {"class_type": "NegGuideViewConditioning", "inputs": {
        "clip": ["ckpt", 1], "prompt": "a corgi", "azimuths": "0, 135", "views": 0, "elevation": 0.0,
        "schedule": "threestudio", "front_range": 45.0, "back_range": 45.0, "overhead_threshold": 60.0,
        "weight_scale": 1.0, "front_template": "{p}, front view", "side_template": "{p}, side view",
        "back_template": "{p}, back view", "overhead_template": "{p}, overhead view"}}
    for name, (class_type, inputs) in GUIDERS.items():
        g[name] = {"class_type": class_type, "inputs": {**inputs, "model": list(model)}}
    return g


def noise_for(name, batch=1, seed=0, size=8, dtype=torch.float32):
    """Seeded noise; the view guider always gets its batch of VIEWS."""
    shape = (VIEWS if name == "views" else batch, 4, size, size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def sample(guider, noise, sampler="euler", steps=2, seed=0, callback=None):
    """What the pack's KSampler nodes do after preparing noise: the sampler's own sigmas from a core KSampler
    (some drop the penultimate one), then guider.sample from an empty latent."""
    import comfy.samplers
    model = guider.model_patcher
    sigmas = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler, scheduler="normal",
                                     model_options=model.model_options).sigmas
    sampler = comfy.samplers.ksampler(sampler, OPTIONS[sampler]) if sampler in OPTIONS else comfy.samplers.sampler_object(sampler)
    with torch.inference_mode():  # as ComfyUI's executor runs nodes: uni_pc and ipndm fail on its conds without it
        return guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, callback=callback, disable_pbar=True, seed=seed)


def built(host, graph):
    """name -> the guider object ComfyUI's executor built for that GUIDERS node of graph."""
    out = host.execute(graph, list(GUIDERS))
    return {name: out[name][0] for name in GUIDERS}


@pytest.fixture(scope="module")
def guiders(host):
    return built(host, guider_graph(host.ckpt))


def test_issue_samplers_are_all_in_the_host(host):
    import comfy.samplers
    assert set(CORE) <= set(comfy.samplers.KSampler.SAMPLERS), set(CORE) - set(comfy.samplers.KSampler.SAMPLERS)


def check(guider, name, sampler):
    """None when sampling twice with the same noise and seed gives the same finite latent, else what went wrong."""
    noise = noise_for(name)
    first = sample(guider, noise, sampler, seed=7)
    second = sample(guider, noise, sampler, seed=7)
    if not torch.isfinite(first).all():
        return "not finite"
    if not torch.equal(first, second):
        return f"not deterministic: max difference {(first - second).abs().max().item():.3g}"
    return None


@pytest.mark.parametrize("name", GUIDERS)
@pytest.mark.parametrize("sampler", CORE)
def test_finite_and_deterministic(guiders, name, sampler):
    assert check(guiders[name], name, sampler) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", GUIDERS)
def test_long_tail_of_samplers(guiders, name):
    """Every other sampler the host offers (read at run time, so new ones are covered as they appear)."""
    import comfy.samplers
    rest = [s for s in comfy.samplers.KSampler.SAMPLERS if s not in CORE]
    assert rest, "the host offers only the issue's samplers"
    failures = {s: check(guiders[name], name, s) for s in rest}
    assert {s: f for s, f in failures.items() if f} == {}
