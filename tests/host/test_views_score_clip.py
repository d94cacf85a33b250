"""Score clipping on the Perp-Neg guider in a real ComfyUI: off by default, bounds the guidance, schedule by step."""
import importlib

import torch

from hostlib import tiny_graph


def guider(host, start=0.0, end=0.0, cfg=7.5):
    g = tiny_graph(host.ckpt)
    g["guider"] = {"class_type": "NegGuidePerpNegGuider", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "negative": ["neg", 0],
        "cfg": cfg, "neg_weight": 1.5, "score_clip_start": start, "score_clip_end": end}}
    return host.execute(g, ["guider"])["guider"][0]


def sample(gd, noise, steps=3, spy=None):
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(gd.model_patcher.get_model_object("model_sampling"), "normal", steps)
    if spy:
        gd.model_options = {**gd.model_options, **spy}
    return gd.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                     disable_pbar=True, seed=0), sigmas


def test_off_by_default_and_loose_bound_changes_nothing(host):
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    plain, _ = sample(guider(host), noise)
    gd = guider(host)
    score_clip = importlib.import_module(f"{host.pack.__name__}.guiders.score_clip")
    gd.technique = score_clip.ScoreClip(gd.technique, 1e7, 1e7)  # beyond the widgets' range: a bound nothing reaches
    loose, _ = sample(gd, noise)
    assert (plain - loose).abs().max() <= 1e-5 * plain.abs().max()  # fp32 rounding of the recomposed term only
    tight, _ = sample(guider(host, 0.5, 2.0), noise)
    assert torch.isfinite(tight).all() and not torch.allclose(plain, tight, atol=1e-2)


def test_final_guidance_is_clipped_on_the_schedule(host):
    """|D_guided - D_empty| <= psi * sigma elementwise at every evaluation, psi from 0.5 (first) to 2 (last step)."""
    import comfy.samplers
    empty, finals = [], []

    def calc(args):
        out = comfy.samplers.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])
        empty.append(out[1])
        return out

    def post(args):
        finals.append((args["denoised"], args["sigma"]))
        return args["denoised"]

    spy = {"sampler_calc_cond_batch_function": calc, "sampler_post_cfg_function": [post]}
    _, sigmas = sample(guider(host, 0.5, 2.0), torch.randn(2, 4, 8, 8), steps=4, spy=spy)
    assert len(finals) == 4
    active = []
    for k, ((d, sigma), d_empty) in enumerate(zip(finals, empty)):
        bound = (0.5 + (2.0 - 0.5) * k / 3) * sigma.max().item()
        g = (d - d_empty).abs().max().item()
        assert g <= bound * (1 + 1e-5) + 1e-5, (k, g, bound)
        active.append(g >= 0.999 * bound)
    assert active[0], "the first step's guidance should reach the tight bound"


def test_ksampler_node_accepts_the_clip_widgets(host):
    g = tiny_graph(host.ckpt)
    g["ks"] = {"class_type": "NegGuidePerpNegSampler", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "negative": ["neg", 0],
        "cfg": 7.5, "neg_weight": 1.5, "latent_image": ["latent", 0], "seed": 1, "steps": 2, "sampler_name": "euler",
        "scheduler": "normal", "denoise": 1.0, "score_clip_start": 2.0, "score_clip_end": 8.0}}
    out = host.execute(g, ["ks"])["ks"][0]["samples"]
    assert torch.isfinite(out).all()
