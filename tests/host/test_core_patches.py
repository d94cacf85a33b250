"""Every core model patch that hooks CFG (cfg / pre-cfg / post-cfg / calc_cond_batch functions) or wraps what a model
batch evaluates (EasyCache, LazyCache) in ComfyUI 0.3.64, with every NegGuide guider, as a user wires them: at zero
strength of the technique the result is core CFGGuider's with the same patch; at strength it is finite, the patch
acts and the technique acts. Tiny random models (tiny_families.py), 8x8 latents, a few euler steps."""
import functools

import pytest
import torch

import tiny_families as T
from hostlib import sample_guider

SCALE = 4.0
# node id -> (its inputs besides the model, family, latent batch, steps). SkipLayerGuidance patches DiT blocks
# (SD3's MMDiT here). Batches of 1 where core's node only handles one latent: RenormCFG tests one image's norm with
# `if`, EasyCache adds every prompt's cached rows to the whole batch at a skipped step. VideoTriangleCFGGuidance
# gives the first and last image min_cfg, so 3 images. The step caches need steps to skip.
PATCHES = {
    "RescaleCFG": ({"multiplier": 0.7}, "sd15", 2, 2),
    "RenormCFG": ({"cfg_trunc": 100.0, "renorm_cfg": 1.0}, "sd15", 1, 2),
    "VideoLinearCFGGuidance": ({"min_cfg": 1.0}, "sd15", 2, 2),
    "VideoTriangleCFGGuidance": ({"min_cfg": 1.0}, "sd15", 3, 2),
    "PerpNeg": ({"neg_scale": 1.0}, "sd15", 2, 2),  # core's deprecated cfg-function Perp-Neg (adds empty_conditioning)
    "APG": ({"eta": 0.0, "norm_threshold": 1.0, "momentum": -0.5}, "sd15", 2, 3),
    "FreSca": ({"scale_low": 1.0, "scale_high": 2.0, "freq_cutoff": 2}, "sd15", 2, 2),
    "LatentApplyOperationCFG": ({}, "sd15", 2, 2),  # with LatentOperationTonemapReinhard
    "TCFG": ({}, "sd15", 2, 2),
    "CFGZeroStar": ({}, "sd15", 2, 2),
    "CFGNorm": ({"strength": 1.0}, "sd15", 2, 2),
    "Epsilon Scaling": ({"scaling_factor": 1.2}, "sd15", 2, 2),
    "Mahiro": ({}, "sd15", 2, 2),
    "PerturbedAttentionGuidance": ({"scale": 3.0}, "sd15", 2, 2),
    "SelfAttentionGuidance": ({"scale": 0.5, "blur_sigma": 2.0}, "sd15", 2, 2),
    "SkipLayerGuidanceDiT": ({"double_layers": "0", "single_layers": "", "scale": 3.0, "start_percent": 0.0,
                              "end_percent": 1.0, "rescaling_scale": 0.0}, "sd3", 2, 2),
    "SkipLayerGuidanceDiTSimple": ({"double_layers": "0", "single_layers": "", "start_percent": 0.0,
                                    "end_percent": 1.0}, "sd3", 2, 2),
    "EasyCache": ({"reuse_threshold": 3.0, "start_percent": 0.0, "end_percent": 1.0, "verbose": False}, "sd15", 1, 5),
    "LazyCache": ({"reuse_threshold": 3.0, "start_percent": 0.0, "end_percent": 1.0, "verbose": False}, "sd15", 2, 5),
}
GUIDERS = ("perpneg", "dng", "dng_perp", "views")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: a second torch thread costs more in synchronisation than it saves (tests/host/test_families.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for cached in (prompts, view_prompts, T.model, T.clip):
        cached.cache_clear()
    UNPATCHED.clear()


def node(host, node_id, **inputs):
    """The node's first output, called as ComfyUI calls it (V3 execute or the V1 FUNCTION)."""
    cls = host.nodes.NODE_CLASS_MAPPINGS[node_id]
    if hasattr(cls, "define_schema"):
        return cls.execute(**inputs).args[0]
    return getattr(cls(), cls.FUNCTION)(**inputs)[0]


@functools.lru_cache(maxsize=None)
def prompts(family):
    return {k: T.encode(family, text) for k, text in (("positive", "a photo of a cat"), ("empty", ""),
                                                       ("negative", "blurry"))}


@functools.lru_cache(maxsize=None)
def view_prompts(weight_scale):
    """View Conditioning for a batch of two views (front, back): blended positives and two per-image negatives."""
    import nodes
    templates = {f"{v}_template": f"{{p}}, {v} view" for v in ("front", "side", "back", "overhead")}
    out = nodes.NODE_CLASS_MAPPINGS["NegGuideViewConditioning"].execute(
        clip=T.clip("sd15"), prompt="a corgi", azimuths="0, 150", views=0, elevation=0.0, schedule="threestudio",
        front_range=45.0, back_range=45.0, overhead_threshold=60.0, weight_scale=weight_scale, **templates).args
    return out[0], out[1], out[2]


def patched(host, name, family):
    inputs, model = dict(PATCHES[name][0]), T.model(family)
    if name == "PerpNeg":
        inputs["empty_conditioning"] = prompts(family)["empty"]
    if name == "LatentApplyOperationCFG":
        inputs["operation"] = node(host, "LatentOperationTonemapReinhard", multiplier=1.0)
    return node(host, name, model=model, **inputs)


def core_cfg(model, positive, negative, scale=SCALE):
    import comfy.samplers
    g = comfy.samplers.CFGGuider(model)
    g.set_conds(positive, negative)
    g.set_cfg(scale)
    return g


def guider(host, name, family, model, strength=1.0, scale=SCALE):
    """One NegGuide guider node; strength 0 turns its technique off (weights 0, lambda0 0)."""
    c = prompts(family)
    base = {"model": model, "positive": c["positive"], "empty_conditioning": c["empty"], "cfg": scale}
    if name == "views":
        positive, empty, negatives = view_prompts(strength)
        return node(host, "NegGuidePerpNegGuider", **dict(base, positive=positive, empty_conditioning=empty),
                    more_negatives=negatives)
    if name.startswith("dng"):  # correction "on": DNG's probe rows ride along on every step but the last
        return node(host, "NegGuideDNGGuider", **base, unwanted=c["negative"], lambda0=15.0 * strength, prior=0.3,
                    tau=0.25, delta=0.003, p_min=1e-6, p_max=0.99, perpendicular=name == "dng_perp",
                    per_element=True, correction="on")
    return node(host, "NegGuidePerpNegGuider", **base, negative=c["negative"], neg_weight=1.5 * strength)


def core_of(host, name, family, model, scale=SCALE):
    """Core CFGGuider with the prompts the NegGuide guider `name` uses as its CFG pair."""
    if name == "views":
        positive, empty, _ = view_prompts(0.0)
        return core_cfg(model, positive, empty, scale)
    return core_cfg(model, prompts(family)["positive"], prompts(family)["empty"], scale)


def close(a, b, tol=1e-4):
    """Equal up to float noise of the result's scale (a batch of three sums in another order than a batch of two)."""
    return bool((a - b).abs().max() <= tol * b.abs().max())


def run(gd, family, batch, steps, seed=3):
    return sample_guider(gd, T.noise(family, batch, seed=seed), steps=steps)


UNPATCHED = {}


def unpatched(host, name, family, batch, steps):
    key = (name, family, batch, steps)
    if key not in UNPATCHED:
        UNPATCHED[key] = run(guider(host, name, family, T.model(family)), family, batch, steps)
    return UNPATCHED[key]


@pytest.mark.parametrize("name", GUIDERS)
@pytest.mark.parametrize("patch", PATCHES)
def test_patch_with_guider(host, patch, name):
    _, family, batch, steps = PATCHES[patch]
    if name == "views" and (family, batch) != ("sd15", 2):
        pytest.skip("View Conditioning is tested with its two views on SD1.5 (a conditioning node: the same on every "
                    "family)")
    model = patched(host, patch, family)
    core = run(core_of(host, name, family, model), family, batch, steps)
    off = run(guider(host, name, family, model, strength=0.0), family, batch, steps)
    assert close(off, core), (off - core).abs().max()
    on = run(guider(host, name, family, model), family, batch, steps)
    assert torch.isfinite(on).all()
    assert not close(on, off, 1e-3)  # the technique acts under the patch
    assert not close(on, unpatched(host, name, family, batch, steps), 1e-3)  # and the patch acts on the technique


@pytest.mark.parametrize("patch", [p for p in PATCHES if p != "PerpNeg"])
def test_dns_guider_is_core_cfg_with_the_patch(host, patch):
    """DNS is core CFG with the roles swapped at cfg s + 1 (nodes/dns.py): every patch acts as on core CFG. (Not
    core's PerpNeg patch: it measures from the empty prompt, DNS's positive, and divides by zero on core too.)"""
    _, family, batch, steps = PATCHES[patch]
    model, c = patched(host, patch, family), prompts(family)
    dns = node(host, "NegGuideDNSGuider", model=model, positive=c["positive"], empty_conditioning=c["empty"],
               dns_scale=SCALE)
    out = run(dns, family, batch, steps)
    assert torch.isfinite(out).all()
    assert torch.equal(out, run(core_cfg(model, c["empty"], c["positive"], SCALE + 1), family, batch, steps))


@pytest.mark.parametrize("patch", ["CFGZeroStar", "SkipLayerGuidanceDiTSimple", "EasyCache", "APG"])
def test_at_cfg_1_the_hooks_see_what_core_gives_them(host, patch):
    """At s = 1 core evaluates (positive, None) and hands the hooks a zero uncond. DNG still needs the empty prompt
    (and the unwanted one): it rides outside the pair, so at lambda0 0 the result is core's."""
    _, family, batch, steps = PATCHES[patch]
    model = patched(host, patch, family)
    core = run(core_of(host, "dng", family, model, 1.0), family, batch, steps)
    assert close(run(guider(host, "dng", family, model, strength=0.0, scale=1.0), family, batch, steps), core)


def test_calc_cond_batch_hook_sees_the_pair_and_the_rest_takes_one_more_call(host, monkeypatch):
    """With a calc_cond_batch hook the hook gets exactly CFG's pair; the unwanted prompt and the probe rows are
    evaluated beside it, each in one batched call of their own."""
    import comfy.samplers
    seen, calls = [], []

    def hook(args):
        seen.append(len(args["conds"]))
        return comfy.samplers.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])

    def counting(model, conds, *args, **kwargs):
        calls.append(sum(c is not None for c in conds))
        return calc(model, conds, *args, **kwargs)

    calc = comfy.samplers.calc_cond_batch
    monkeypatch.setattr(comfy.samplers, "calc_cond_batch", counting)
    gd = guider(host, "dng", "sd15", T.model("sd15"))
    sample_guider(gd, T.noise("sd15", 1), steps=3, options={"sampler_calc_cond_batch_function": hook})
    hooked = list(calls)
    calls.clear()
    sample_guider(guider(host, "dng", "sd15", T.model("sd15")), T.noise("sd15", 1), steps=3)
    assert seen == [2, 2, 2]
    assert hooked == [2, 1, 2, 2, 1, 2, 2, 1]  # per step: the pair, the unwanted prompt, the probe rows (none last)
    assert calls == [3, 2, 3, 2, 3]  # no hook: all three prompts in ONE call, then the probe rows


def test_rescale_cfg_is_continuous_across_the_fold(host):
    """The term is folded into (cond, uncond) for cfg hooks; the fold is continuous in s, so RescaleCFG's output
    does not jump where the fold hands the term from the positive to the negative side (s = 1.5)."""
    model = patched(host, "RescaleCFG", "sd15")
    out = {s: run(guider(host, "perpneg", "sd15", model, scale=s), "sd15", 1, 2) for s in (1.48, 1.49, 1.50, 1.51)}
    steps = [(out[b] - out[a]).norm().item() for a, b in ((1.48, 1.49), (1.49, 1.50), (1.50, 1.51))]
    assert steps[1] <= 2 * max(steps[0], steps[2]), steps


def test_fold_gives_plain_cfg_and_is_continuous():
    from negguide.guiders.technique import fold_cfg_pair
    g = torch.Generator().manual_seed(0)
    cond, uncond, extra = (torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64) for _ in range(3))
    for s in (0.0, 0.3, 0.5, 0.9, 1.0, 1.2, 1.5, 2.0, 7.5):
        c, u = fold_cfg_pair(cond, uncond, extra, s)
        assert torch.allclose(u + s * (c - u), uncond + s * (cond - uncond) + extra)
    for edge in (0.5, 1.5):
        below, above = fold_cfg_pair(cond, uncond, extra, edge - 1e-9), fold_cfg_pair(cond, uncond, extra, edge + 1e-9)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(below, above))
    assert torch.equal(fold_cfg_pair(cond, uncond, extra, 7.5)[0], cond)  # away from s = 1 the positive is untouched
