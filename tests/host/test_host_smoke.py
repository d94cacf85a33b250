"""The pack loads in a real ComfyUI and a tiny graph runs through its executor."""
import torch

from hostlib import tiny_graph


def test_pack_nodes_registered(host):
    for node_id in ("NegGuidePerpNegGuider", "NegGuidePerpNegSampler", "NegGuideAddNegative"):
        assert node_id in host.nodes.NODE_CLASS_MAPPINGS, node_id
    assert host.nodes.NODE_CLASS_MAPPINGS["PerpNegGuider"].__module__.endswith("nodes_perpneg")  # core keeps its own


def test_ksampler_runs_on_tiny_checkpoint(host):
    g = tiny_graph(host.ckpt)
    g["ks"] = {"class_type": "KSampler", "inputs": {"model": ["ckpt", 0], "seed": 1, "steps": 2, "cfg": 5.0,
               "sampler_name": "euler", "scheduler": "normal", "positive": ["pos", 0], "negative": ["neg", 0],
               "latent_image": ["latent", 0], "denoise": 1.0}}
    out = host.execute(g, ["ks"])["ks"][0]["samples"]
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
