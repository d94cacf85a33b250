"""Every NegGuide guider on every model family people run (docs/families.md): tiny random SD1.5, SDXL, SD3, Flux dev,
Wan 2.1 and Chroma models built from ComfyUI's own configs (tiny_families.py), sampled through the real host."""
import functools

import pytest
import torch

import tiny_families as T
from hostlib import recording_hooks, sample_guider as sample

FAMILIES = T.FAMILIES
CFG = {"flux": 1.0}  # Flux dev is guidance-distilled: people run it at cfg 1 (docs/families.md)
FLUX_GUIDANCE = 3.5
PER_IMAGE = [0.5, 2.0]  # per-image weights of the second Perp-Neg negative (a batch of 2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: a second torch thread costs more in synchronisation than it saves, and on a busy CI machine
    far more (20x measured on 2 shared cores). Restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for cached in (prompts, T.model, T.clip):  # free the models while ComfyUI's modules are still alive
        cached.cache_clear()


def cfg(family):
    return CFG.get(family, 5.0)


@functools.lru_cache(maxsize=None)
def prompts(family):
    """CLIP Text Encode of the tiny CLIP; on Flux every prompt also goes through FluxGuidance, as users wire it."""
    import node_helpers
    out = {k: T.encode(family, text) for k, text in
           (("positive", "a photo of a cat"), ("empty", ""), ("negative", "blurry"), ("negative2", "a dog"))}
    if family == "flux":
        out = {k: node_helpers.conditioning_set_values(c, {"guidance": FLUX_GUIDANCE}) for k, c in out.items()}
    return out


def node(host, node_id, **inputs):
    return host.nodes.NODE_CLASS_MAPPINGS[node_id].execute(**inputs).args[0]


def guider(host, name, family, model=None, scale=None, strength=1.0, per_image=PER_IMAGE):
    """One guider node of the matrix. strength 0 turns its negative term off (neg_weight / lambda0 = 0)."""
    c = prompts(family)
    base = {"model": model or T.model(family), "positive": c["positive"], "empty_conditioning": c["empty"],
            "cfg": cfg(family) if scale is None else scale}
    if name == "dns":
        return node(host, "NegGuideDNSGuider", model=base["model"], positive=c["positive"],
                    empty_conditioning=c["empty"], dns_scale=base["cfg"])
    if name.startswith("dng"):
        return node(host, "NegGuideDNGGuider", **base, unwanted=c["negative"], lambda0=15.0 * strength, prior=0.3,
                    tau=0.25, delta=0.003, p_min=1e-6, p_max=0.99, perpendicular=name == "dng_perp", per_element=True)
    perp = dict(base, negative=c["negative"], neg_weight=1.5 * strength)
    if name == "perpneg_k2":
        perp["more_negatives"] = [{"conditioning": c["negative2"], "weight": [w * strength for w in per_image],
                                   "label": "per-image negative"}]
    if name == "perpneg_clip":
        perp.update(score_clip_start=0.5, score_clip_end=0.1)
    return node(host, "NegGuidePerpNegGuider", **perp)




def close(a, b, tol=1e-4):
    """Equal up to float noise of the result's scale (a batched matmul sums in another order than a single one)."""
    return bool((a - b).abs().max() <= tol * b.abs().max())


def core_cfg(family, model, scale, positive="positive", negative="empty"):
    import comfy.samplers
    g = comfy.samplers.CFGGuider(model)
    g.set_conds(prompts(family)[positive], prompts(family)[negative])
    g.set_cfg(scale)
    return g


GUIDERS = ("perpneg_k1", "perpneg_k2", "perpneg_clip", "dng", "dng_perp", "dns")


@pytest.mark.parametrize("name", GUIDERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_finite_and_a_batch_equals_its_single_runs(host, family, name):
    noise = T.noise(family, 2, seed=1)
    batched = sample(guider(host, name, family), noise)
    assert batched.shape == noise.shape and torch.isfinite(batched).all()
    singles = torch.cat([sample(guider(host, name, family, per_image=[w]), noise[i:i + 1])
                         for i, w in enumerate(PER_IMAGE)])
    assert close(batched, singles), (batched - singles).abs().max()
    if name != "dns":  # the negative term really acts on this family (DNS has none: it is core CFG)
        off = sample(guider(host, name, family, strength=0.0), noise)
        assert not close(batched, off, 1e-3)


def patched(host, family, patch):
    import comfy_extras.nodes_cfg
    import comfy_extras.nodes_model_advanced
    if patch == "RescaleCFG":
        return comfy_extras.nodes_model_advanced.RescaleCFG().patch(T.model(family), 0.7)[0]
    return comfy_extras.nodes_cfg.CFGZeroStar.execute(T.model(family)).args[0]


@pytest.mark.parametrize("patch", ["RescaleCFG", "CFGZeroStar"])
@pytest.mark.parametrize("family", FAMILIES)
def test_model_patches_act_as_on_core_cfg(host, family, patch):
    """cfg-function (RescaleCFG) and post-cfg (CFGZeroStar) patches: a guider whose negative is off gives exactly
    what core CFGGuider gives on the same patched model, and with the negative on the patch still changes it.
    cfg 4 everywhere: at cfg 1 both patches are the identity."""
    noise, model = T.noise(family, 1, seed=2), patched(host, family, patch)
    core = sample(core_cfg(family, model, 4.0), noise)
    assert not close(core, sample(core_cfg(family, T.model(family), 4.0), noise), 1e-3)  # the patch acts
    assert torch.equal(sample(guider(host, "perpneg_k1", family, model, 4.0, strength=0.0), noise), core)
    assert close(sample(guider(host, "dng", family, model, 4.0, strength=0.0), noise), core)
    for name in ("perpneg_k1", "dng"):
        on = sample(guider(host, name, family, model, 4.0), noise)
        assert torch.isfinite(on).all()
        assert not close(on, sample(guider(host, name, family, None, 4.0), noise), 1e-3)
    dns = sample(guider(host, "dns", family, model, 4.0), noise)  # DNS = core CFG, roles swapped, at s + 1
    assert torch.equal(dns, sample(core_cfg(family, model, 5.0, positive="empty", negative="positive"), noise))


def spy_model_inputs(seen):
    """model_function_wrapper that records what reaches the diffusion model, per prompt of the batch."""
    def wrapper(apply_model, args):
        seen.append((list(args["cond_or_uncond"]), {k: v.detach().clone() for k, v in args["c"].items()
                                                    if torch.is_tensor(v)}))
        return apply_model(args["input"], args["timestep"], **args["c"])
    return {"model_function_wrapper": wrapper}


def rows_of(seen_call, prompt, batch):
    """The rows of every model input that belong to prompt index `prompt` (0 positive, 1 empty, 2.. negatives)."""
    order, c = seen_call
    k = order.index(prompt)
    return {key: v[k * batch:(k + 1) * batch] for key, v in c.items() if v.shape[0] == len(order) * batch}


# The model inputs each family's conditioning turns into (c_crossattn: text tokens; y: pooled / ADM vector).
USED = {"sd15": {"c_crossattn"}, "sdxl": {"c_crossattn", "y"}, "sd3": {"c_crossattn", "y"},
        "flux": {"c_crossattn", "y", "guidance"}, "wan21": {"c_crossattn"}, "chroma": {"c_crossattn"}}


def view_conditioning(host, family):
    view = host.nodes.NODE_CLASS_MAPPINGS["NegGuideViewConditioning"]
    out = view.execute(clip=T.clip(family), prompt="a corgi", azimuths="0, 45, 90", views=0, elevation=0.0,
                       schedule="threestudio", front_range=45.0, back_range=45.0, overhead_threshold=60.0,
                       weight_scale=1.0, front_template="{p}, front view", side_template="{p}, side view",
                       back_template="{p}, back view", overhead_template="{p}, overhead view").args
    positive, empty, negatives, n = out[:4]
    if family == "flux":
        import node_helpers  # FluxGuidance after the view node, on everything that carries guidance
        positive, empty = (node_helpers.conditioning_set_values(c, {"guidance": FLUX_GUIDANCE}) for c in (positive, empty))
    return positive, empty, negatives, n


@pytest.mark.parametrize("family", FAMILIES)
def test_view_conditioning_reaches_the_model_interpolated_per_image(host, family):
    """Azimuths 0, 45, 90: image 0 is the front prompt, image 2 the side prompt, image 1 their half-half blend
    (Perp-Neg sec. 3.2, r = 1 - |a| / 90). Every model input the family uses must follow, row by row."""
    positive, empty, negatives, n = view_conditioning(host, family)
    assert n == 3
    g = node(host, "NegGuidePerpNegGuider", model=T.model(family), positive=positive, empty_conditioning=empty,
             cfg=cfg(family), neg_weight=0.0, more_negatives=negatives)
    seen = []
    sample(g, T.noise(family, 3, seed=3), steps=1, options=spy_model_inputs(seen))
    rows = rows_of(seen[0], 0, 3)
    assert USED[family] <= set(rows), f"{family}: the model got {sorted(rows)}"
    front, side = (T.encode(family, f"a corgi, {v} view")[0] for v in ("front", "side"))
    length = front[0].shape[1]
    assert close(rows["c_crossattn"][0, :length], front[0][0]) and close(rows["c_crossattn"][2, :length], side[0][0])
    if family in ("sd3", "flux"):  # y is the pooled output itself (SDXL's ADM vector: see the size-key test)
        assert close(rows["y"][0], front[1]["pooled_output"][0]) and close(rows["y"][2], side[1]["pooled_output"][0])
    if "y" in rows:
        assert not close(rows["y"][0], rows["y"][2], 1e-3), "the pooled part must differ between views"
    for key, v in rows.items():  # every input is blended per image, the guidance kept
        assert close(v[1], 0.5 * v[0] + 0.5 * v[2], 1e-5), key
    if family == "flux":
        assert torch.equal(rows["guidance"], torch.full_like(rows["guidance"], FLUX_GUIDANCE))
    # The two view negatives, per image: front and side below 90 degrees, side and front from 90 on (sec. 3.2).
    for k, views in ((2, (front, front, side)), (3, (side, side, front))):
        neg = rows_of(seen[0], k, 3)["c_crossattn"]
        assert all(close(neg[i, :length], want[0][0]) for i, want in enumerate(views))


def test_sdxl_size_keys_survive_view_blending(host):
    """CLIP Text Encode SDXL adds size keys; blending such conditionings keeps them and they reach the ADM vector."""
    import comfy.samplers
    views = importlib_views(host)
    sdxl = host.nodes.NODE_CLASS_MAPPINGS["CLIPTextEncodeSDXL"]
    enc = {v: sdxl.execute(clip=T.clip("sdxl"), width=1024, height=768, crop_w=0, crop_h=0, target_width=1024,
                           target_height=768, text_g=f"a corgi, {v} view", text_l=f"a corgi, {v} view").args[0]
           for v in ("front", "side")}
    mixed = views.mix_conditionings(enc, [{"front": 1.0}, {"front": 0.5, "side": 0.5}, {"side": 1.0}])
    assert mixed[0][1]["width"] == 1024 and mixed[0][1]["height"] == 768
    model = T.model("sdxl").model
    want = [model.encode_adm(pooled_output=e[0][1]["pooled_output"], width=1024, height=768, crop_w=0, crop_h=0,
                             target_width=1024, target_height=768) for e in (enc["front"], enc["side"])]
    g = comfy.samplers.CFGGuider(T.model("sdxl"))
    g.set_conds(mixed, prompts("sdxl")["empty"])
    g.set_cfg(5.0)
    seen = []
    sample(g, T.noise("sdxl", 3), steps=1, options=spy_model_inputs(seen))
    y = rows_of(seen[0], 0, 3)["y"]
    assert close(y[0], want[0][0]) and close(y[2], want[1][0]) and close(y[1], 0.5 * (want[0][0] + want[1][0]))


def importlib_views(host):
    import importlib
    return importlib.import_module(f"{host.pack.__name__}.guiders.views")


def perpendicular(e, e_pos):
    """e minus its projection on e_pos, per image (written out here, independent of guiders/perp_neg.py)."""
    e, e_pos = e.double().flatten(1), e_pos.double().flatten(1)
    coef = (e * e_pos).sum(1, keepdim=True) / (e_pos * e_pos).sum(1, keepdim=True)
    return e - coef * e_pos


def test_flux_negatives_at_cfg_1_in_one_batched_call(host):
    """Negative prompts on a guidance-distilled model: Perp-Neg at cfg 1 is D = D_pos - sum_i w_i e_i_perp. The
    empty prompt is still evaluated (e_i and e_pos are measured from it), all four prompts in ONE model call."""
    calls, finals, seen = [], [], []
    hooks = recording_hooks(calls, finals)
    g = guider(host, "perpneg_k2", "flux")
    assert g.cfg == 1.0
    out = sample(g, T.noise("flux", 2, seed=4), steps=2, options={**hooks, **spy_model_inputs(seen)})
    assert torch.isfinite(out).all()
    assert [len(c) for c in calls] == [4, 4]  # positive, empty, two negatives, once per step
    assert len(seen) == 2 and all(sorted(order) == [0, 1, 2, 3] for order, _ in seen)  # one model call per step
    weights = torch.tensor(PER_IMAGE, dtype=torch.float64)[:, None]
    for (d_pos, d_empty, d_neg, d_neg2), final in zip(calls, finals):
        e_pos = d_pos - d_empty
        want = d_pos.double().flatten(1) - 1.5 * perpendicular(d_neg - d_empty, e_pos) \
            - weights * perpendicular(d_neg2 - d_empty, e_pos)
        assert close(final.double().flatten(1), want, 1e-5)
    plain = []
    positive_only = sample(core_cfg("flux", T.model("flux"), 1.0), T.noise("flux", 2, seed=4),
                           options=recording_hooks(plain, []))
    assert [len(c) for c in plain] == [1, 1]  # where core CFG at cfg 1 evaluates the positive alone
    assert not close(out, positive_only, 1e-2)  # and the negatives really change the image


def test_unpadded_encoder_views_of_unequal_length_fail_clearly(host):
    """Chroma's T5 (like Qwen-Image's and Lumina 2's encoders) does not pad prompts, so view prompts of different
    token counts cannot be blended token by token: the node must say so, naming the input and the fix."""
    view = host.nodes.NODE_CLASS_MAPPINGS["NegGuideViewConditioning"]
    prompts_by_view = {"front": "a corgi", "side": "a corgi seen from its left side, full body", "back": "a corgi"}
    with pytest.raises(ValueError, match="view_prompts|template"):
        view.execute(clip=T.clip("chroma"), prompt="a corgi", azimuths="0, 45, 90", views=0, elevation=0.0,
                     schedule="threestudio", front_range=45.0, back_range=45.0, overhead_threshold=60.0,
                     weight_scale=1.0, front_template="{p}", side_template="{p}", back_template="{p}",
                     overhead_template="{p}", view_prompts=prompts_by_view)


def test_flux_guidance_of_the_positive_reaches_every_prompt(host):
    """FluxGuidance wired on the positive only: the empty prompt and the negatives are measured at the same guidance
    (ComfyUI would run them at the model's default), and a prompt with its own FluxGuidance keeps it."""
    import node_helpers
    c = {k: T.encode("flux", t) for k, t in (("positive", "a cat"), ("empty", ""), ("negative", "blurry"))}
    positive = node_helpers.conditioning_set_values(c["positive"], {"guidance": 5.0})
    negative = node_helpers.conditioning_set_values(c["negative"], {"guidance": 2.0})
    g = node(host, "NegGuidePerpNegGuider", model=T.model("flux"), positive=positive, empty_conditioning=c["empty"],
             cfg=1.0, negative=negative, neg_weight=1.5)
    seen = []
    sample(g, T.noise("flux", 1, seed=2), steps=1, options=spy_model_inputs(seen))
    (order, rows), = seen
    guidance = rows["guidance"][torch.argsort(torch.tensor(order))]  # back to positive, empty, negative
    assert guidance.tolist() == [5.0, 5.0, 2.0]
