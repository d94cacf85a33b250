"""HTTP smoke test: a real ComfyUI server (subprocess, 127.0.0.1) lists, documents and runs our nodes."""
import json
import urllib.parse

from _server import PACK_DIR, TINY, comfy_server_fixture, server_fixture  # noqa: F401
from hostlib import ROOT, tiny_graph

OUR_NODES = ("NegGuidePerpNegGuider", "NegGuidePerpNegSampler", "NegGuideAddNegative")
# Guiders and samplers under sampling, loaders under loaders, image tools under image, prompt tools under
# conditioning, meshes under 3d (where core keeps SaveGLB).
CATEGORIES = ("sampling/custom_sampling/NegGuide", "conditioning/NegGuide", "loaders/NegGuide", "image/NegGuide", "3d/NegGuide")


def test_object_info_lists_our_nodes_with_docs(server):
    info = server.get("/object_info")
    ours = {k: v for k, v in info.items() if k.startswith("NegGuide")}
    assert set(OUR_NODES) <= set(ours), f"missing from /object_info: {set(OUR_NODES) - set(ours)}"
    for node_id, d in ours.items():
        assert d["python_module"] == f"custom_nodes.{PACK_DIR}", (node_id, d["python_module"])
        assert d["description"].strip(), f"{node_id} has no description"
        assert d["category"] in CATEGORIES, (node_id, d["category"])
        for group in ("required", "optional"):
            for name, spec in d["input"].get(group, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip", "").strip(), f"{node_id}.{name} has no tooltip"
    # Ours are added next to core's Perp-Neg, never over it.
    assert info["PerpNegGuider"]["python_module"] == "comfy_extras.nodes_perpneg"


def test_workflow_templates_and_extension_are_served(server):
    shipped = sorted(p.stem for p in (ROOT / "example_workflows").glob("*.json"))
    assert "Perp-Neg guider with two negatives" in shipped
    assert sorted(server.get("/workflow_templates").get(PACK_DIR, [])) == shipped
    for name in shipped:  # the template browser fetches them, and <name>.jpg as the thumbnail, from here
        url = f"/api/workflow_templates/{PACK_DIR}/{urllib.parse.quote(name)}"
        assert server.get(f"{url}.json") == json.loads((ROOT / "example_workflows" / f"{name}.json").read_text()), name
        assert server.request(f"{url}.jpg")[:3] == b"\xff\xd8\xff", f"{name}.jpg is not a JPEG"
    script = f"/extensions/{PACK_DIR}/negguide.js"
    assert script in server.get("/extensions")
    assert b"registerExtension" in server.request(script)


def test_prompt_runs_perp_neg_sampler(server):
    g = tiny_graph(TINY, prompt="a photo of a red fox", negative="front view")
    g["neg2"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "back view", "clip": ["ckpt", 1]}}
    g["add"] = {"class_type": "NegGuideAddNegative", "inputs": {"conditioning": ["neg2", 0], "weight": 1.0}}
    g["ks"] = {"class_type": "NegGuidePerpNegSampler", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "negative": ["neg", 0],
        "more_negatives": ["add", 0], "cfg": 7.5, "neg_weight": 1.5, "latent_image": ["latent", 0], "seed": 1,
        "steps": 2, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}
    g["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ckpt", 2]}}
    g["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "negguide_http"}}
    entry = server.run(g)
    images = server.images(entry)
    assert len(images) == 1 and images[0].name.startswith("negguide_http"), entry["outputs"]
    from PIL import Image  # a host requirement: imported here so a missing host skips instead of erroring

    with Image.open(images[0]) as img:
        assert img.size == (64, 64)
