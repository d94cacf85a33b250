"""View conditioning in a real ComfyUI: batch = views, the blended tensors reach the model, bad input."""
import json
import math
import pathlib

import pytest
import torch

from hostlib import tiny_graph

PROMPT = "a corgi"


def views_node(azimuths="0, 90, 180", views=0, elevation=0.0, **extra):
    return {"class_type": "NegGuideViewConditioning", "inputs": {
        "clip": ["ckpt", 1], "prompt": PROMPT, "azimuths": azimuths, "views": views, "elevation": elevation,
        "schedule": "threestudio", "front_range": 45.0, "back_range": 45.0, "overhead_threshold": 60.0,
        "weight_scale": 1.0, "front_template": "{p}, front view", "side_template": "{p}, side view",
        "back_template": "{p}, back view", "overhead_template": "{p}, overhead view", **extra}}


def guider_node(cfg=7.5):
    return {"class_type": "NegGuidePerpNegGuider", "inputs": {
        "model": ["ckpt", 0], "positive": ["views", 0], "empty_conditioning": ["views", 1], "cfg": cfg,
        "neg_weight": 1.5, "more_negatives": ["views", 2]}}


def view_guider(host, azimuths, **kw):
    g = tiny_graph(host.ckpt)
    g["views"] = views_node(azimuths, **kw)
    g["guider"] = guider_node()
    out = host.execute(g, ["guider", "views"])
    return out["guider"][0], out["views"]


def direct_sample(guider, noise, steps=3):
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(guider.model_patcher.get_model_object("model_sampling"), "normal", steps)
    return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                         disable_pbar=True, seed=0)


def close(a, b, tol=1e-4):
    """Equal to within tol of the result's scale (batched and single convolutions sum in another order)."""
    return (a - b).abs().max() <= tol * b.abs().max()


def test_batch_of_three_views_equals_three_single_view_runs(host):
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    guider, out = view_guider(host, "0, 135, 250")
    assert out[3] == 3 and out[0][0][0].shape[0] == 3
    batched = direct_sample(guider, noise)
    singles = torch.cat([direct_sample(view_guider(host, a)[0], noise[i:i + 1]) for i, a in enumerate(("0", "135", "250"))])
    assert close(batched, singles), (batched - singles).abs().max()
    # and the views really differ: the same noise under the front view alone gives another result
    front = direct_sample(view_guider(host, "0, 0, 0")[0], noise)
    assert not close(batched[1:], front[1:])


def test_blended_conditioning_is_what_reaches_the_model(host):
    g = tiny_graph(host.ckpt)
    for v in ("front", "side", "back"):
        g[v] = {"class_type": "CLIPTextEncode", "inputs": {"text": f"{PROMPT}, {v} view", "clip": ["ckpt", 1]}}
    g["views"] = views_node("0, 45, -135")
    g["guider"] = guider_node()
    out = host.execute(g, ["guider", "front", "side", "back"])
    e = {v: out[v][0][0][0] for v in ("front", "side", "back")}
    want = {0: torch.cat([e["front"], 0.5 * e["front"] + 0.5 * e["side"], 0.5 * e["side"] + 0.5 * e["back"]]),
            2: torch.cat([e["front"], e["front"], e["side"]]),   # first negative: front, front, side
            3: torch.cat([e["side"], e["side"], e["front"]])}    # second negative: side, side, front
    seen = {}

    def wrapper(apply_model, args):
        rows = args["input"].shape[0] // len(args["cond_or_uncond"])
        for j, which in enumerate(args["cond_or_uncond"]):
            seen.setdefault(which, args["c"]["c_crossattn"][j * rows:(j + 1) * rows].clone())
        return apply_model(args["input"], args["timestep"], **args["c"])

    guider = out["guider"][0]
    guider.model_options = {**guider.model_options, "model_function_wrapper": wrapper}
    direct_sample(guider, torch.randn(3, 4, 8, 8), steps=1)
    assert sorted(seen) == [0, 1, 2, 3]
    for which, expected in want.items():
        assert seen[which].shape == expected.shape
        assert torch.allclose(seen[which], expected.to(seen[which]), atol=1e-5), which


def test_batch_size_output_drives_the_empty_latent(host):
    g = tiny_graph(host.ckpt)
    g["views"] = views_node("30", views=4)
    g["latent"]["inputs"]["batch_size"] = ["views", 3]
    g["guider"] = guider_node()
    g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}}
    g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "normal", "steps": 2, "denoise": 1.0}}
    g["sca"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["noise", 0], "guider": ["guider", 0],
                "sampler": ["sampler", 0], "sigmas": ["sigmas", 0], "latent_image": ["latent", 0]}}
    out = host.execute(g, ["sca", "views"])
    assert out["sca"][0]["samples"].shape[0] == 4 and torch.isfinite(out["sca"][0]["samples"]).all()
    assert "azimuth 30, " in out["views"][4] and "azimuth 300 (= -60), " in out["views"][4]
    # the same graph with a latent batch that does not match names the view negatives and the fix
    g["latent"]["inputs"]["batch_size"] = 3
    with pytest.raises(host.HostError, match=r"view negative 1: .*4 views; the latent batch must be 4.* latent batch of 3"):
        host.execute(g, ["sca"])


class StubClip:
    """A CLIP stand-in with an SDXL-shaped output (cross-attn 2048 wide, pooled 1280), deterministic per text."""

    def tokenize(self, text):
        return text

    def encode_from_tokens_scheduled(self, text):
        g = torch.Generator().manual_seed(sum(map(ord, text)) * 7 + len(text))
        return [[torch.randn(1, 77, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]


def test_sdxl_pooled_output_is_interpolated_per_view(host):
    node = host.nodes.NODE_CLASS_MAPPINGS["NegGuideViewConditioning"]
    inputs = {k: v for k, v in views_node("30, 120").items() if k == "inputs"}["inputs"]
    out = node.execute(**{**inputs, "clip": StubClip()}).args
    clip = StubClip()
    e = {v: clip.encode_from_tokens_scheduled(f"{PROMPT}, {v} view")[0] for v in ("front", "side", "back")}
    r0, r1 = 1 - 30 / 90, 2 - 120 / 90
    (cond, extra), = out[0]
    for key, got in (("cross", cond), ("pooled_output", extra["pooled_output"])):
        pick = (lambda v: e[v][0]) if key == "cross" else (lambda v: e[v][1][key])  # noqa: B023
        assert torch.allclose(got[0:1], r0 * pick("front") + (1 - r0) * pick("side"), atol=1e-5)
        assert torch.allclose(got[1:2], r1 * pick("side") + (1 - r1) * pick("back"), atol=1e-5)
    weights = [n["weight"] for n in out[2]]
    assert weights[1][0] == pytest.approx(4 * math.exp(-0.5 * (1 - r0)) - 2.426)
    assert weights[1][1] == pytest.approx(math.exp(-0.5 * r1) + 0.967)


def test_bad_input(host):
    node = host.nodes.NODE_CLASS_MAPPINGS["NegGuideViewConditioning"]
    inputs = views_node()["inputs"]
    clip = StubClip()
    cases = [({"prompt": "  "}, "prompt"), ({"azimuths": "front, back"}, "azimuths"), ({"azimuths": ""}, "azimuths"),
             ({"elevation": 95.0}, "elevation"), ({"side_template": "side view"}, "side_template"),
             ({"clip": None}, "clip")]
    for change, name in cases:
        with pytest.raises(ValueError, match=name):
            node.execute(**{**inputs, "clip": clip, **change})
    g = tiny_graph(host.ckpt)
    g["views"] = views_node(elevation=-91.0)
    with pytest.raises(host.HostError, match="elevation"):  # ComfyUI's own range check catches it first
        host.execute(g, ["views"])


def test_overhead_views_are_plain_overhead_prompts(host):
    g = tiny_graph(host.ckpt)
    g["views"] = views_node("0, 90", elevation=75.0)
    g["over"] = {"class_type": "CLIPTextEncode", "inputs": {"text": f"{PROMPT}, overhead view", "clip": ["ckpt", 1]}}
    out = host.execute(g, ["views", "over"])
    pos, negatives = out["views"][0], out["views"][2]
    assert torch.equal(pos[0][0], out["over"][0][0][0].repeat(2, 1, 1))
    assert all(w == 0.0 for n in negatives for w in n["weight"])


def test_image_grid(host):
    node = host.nodes.NODE_CLASS_MAPPINGS["NegGuideImageGrid"]
    images = torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1).expand(5, 2, 3, 3).contiguous()
    grid = node.execute(images=images, columns=2).args[0]
    assert grid.shape == (1, 6, 6, 3)
    cells = grid[0, ::2, ::3, 0]
    assert cells.tolist() == [[0, 1], [2, 3], [4, 0]]
    assert node.execute(images=images, columns=0).args[0].shape == (1, 2, 15, 3)


def test_turnaround_workflow_matches_the_schemas(host):
    """Every NegGuide node of the shipped workflow has one widget value per widget input, in order."""
    wf = json.loads((pathlib.Path(__file__).parents[2] / "example_workflows" / "Turnaround four views in one batch.json").read_text())
    links = {link[0]: link for link in wf["links"]}
    for n in wf["nodes"]:
        if not n["type"].startswith("NegGuide"):
            continue
        schema = host.nodes.NODE_CLASS_MAPPINGS[n["type"]].GET_SCHEMA()
        widgets = []
        for i in schema.inputs:
            if i.get_io_type() in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                widgets.append(i.id)
                if getattr(i, "control_after_generate", False):
                    widgets.append(i.id + ":control")
        assert len(n["widgets_values"]) == len(widgets), (n["type"], widgets, n["widgets_values"])
        for inp in n.get("inputs", []):
            if inp.get("link") is not None:
                assert links[inp["link"]][3] == n["id"]
