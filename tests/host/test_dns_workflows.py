"""The shipped DNP workflows and the all-in-one Auto-DNP node, end to end with a tiny checkpoint and tiny BLIP."""
import importlib
import json
import pathlib

import pytest
import torch

import _tiny_hf as tiny
from hostlib import tiny_graph

tiny.hide_torchvision_stub()
WORKFLOWS = pathlib.Path(__file__).resolve().parents[2] / "example_workflows"
AUTO_CFG, AUTO_PERP_NEG, MANUAL = ("Auto-DNP caption as negative.json", "Auto-DNP with a Perp-Neg final pass.json",
                                   "Manual DNP look then describe.json")
SHIPPED = [AUTO_CFG, AUTO_PERP_NEG, MANUAL]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SAMPLERS = {"KSampler", "NegGuideDNSSampler", "NegGuidePerpNegSampler"}


def widget_names(cls) -> list:
    """Widget order as the frontend saves widgets_values; None marks a seed's control_after_generate value."""
    names = []
    for section in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(section, {}).items():
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            options = spec[1] if len(spec) > 1 else {}
            if kind in WIDGET_TYPES and not options.get("forceInput"):
                names += [name, None] if options.get("control_after_generate") else [name]
    return names


def ui_to_api(workflow: dict, mappings: dict) -> dict:
    """A UI-format (0.4) workflow as the API-format graph the frontend would queue."""
    links = {link[0]: link for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        cls = mappings.get(node["type"])
        if cls is None:
            assert node["type"] in ("Note", "MarkdownNote"), f"unknown node type {node['type']}"
            continue
        names = widget_names(cls)
        assert len(names) == len(node["widgets_values"]), (node["type"], names, node["widgets_values"])
        inputs = {n: v for n, v in zip(names, node["widgets_values"]) if n}
        for slot in node["inputs"]:
            if slot.get("link") is None:
                continue
            _, src, src_slot, dst, _, kind = links[slot["link"]]
            source = next(n for n in workflow["nodes"] if n["id"] == src)
            assert dst == node["id"] and slot["link"] in source["outputs"][src_slot]["links"]
            assert kind == source["outputs"][src_slot]["type"] and slot["type"] in (kind, "*"), (slot, kind)
            inputs[slot["name"]] = [str(src), src_slot]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def ids(api, class_type):
    return [k for k, v in api.items() if v["class_type"] == class_type]


@pytest.fixture(scope="module")
def llm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("LLM")
    tiny.blip(root / "blip")
    return root


@pytest.fixture
def use_llm(monkeypatch, llm_root):
    import folder_paths
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "LLM", ([str(llm_root)], set()))


def shipped(host, name, tiny_run=True):
    api = ui_to_api(json.loads((WORKFLOWS / name).read_text()), host.nodes.NODE_CLASS_MAPPINGS)
    if tiny_run:  # the tiny checkpoint and captioner, 64x64, 2 steps
        for node in api.values():
            inputs = node["inputs"]
            if node["class_type"] == "CheckpointLoaderSimple":
                inputs["ckpt_name"] = host.ckpt
            elif node["class_type"] == "EmptyLatentImage":
                inputs.update(width=64, height=64)
            elif node["class_type"] in SAMPLERS:
                inputs["steps"] = 2
            elif node["class_type"] == "NegGuideCaptionerLoader":
                inputs["model_name"] = "blip"
            elif node["class_type"] == "NegGuideCaption":
                inputs["max_new_tokens"] = 12
    return api


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_workflow_matches_the_schemas(host, name):
    api = shipped(host, name, tiny_run=False)
    [ckpt] = [api[i]["inputs"] for i in ids(api, "CheckpointLoaderSimple")]
    [latent] = [api[i]["inputs"] for i in ids(api, "EmptyLatentImage")]
    assert ckpt["ckpt_name"] == "v1-5-pruned-emaonly.safetensors" and (latent["width"], latent["height"]) == (512, 512)
    [dns] = [api[i]["inputs"] for i in ids(api, "NegGuideDNSSampler")]
    [final] = [api[i]["inputs"] for k in ("KSampler", "NegGuidePerpNegSampler") for i in ids(api, k)]
    assert dns["seed"] == final["seed"] and isinstance(dns["seed"], list)  # one seed primitive feeds both passes
    assert dns["dns_scale"] == final["cfg"] and isinstance(dns["dns_scale"], list)  # DECISION: DNS scale = final cfg
    assert dns["latent_image"] == final["latent_image"]


def final_and_dns(api):
    final = next(i for k in ("KSampler", "NegGuidePerpNegSampler") for i in ids(api, k))
    return final, ids(api, "NegGuideDNSSampler")[0]


@pytest.mark.parametrize("name, guidance", [(AUTO_CFG, "cfg"), (AUTO_PERP_NEG, "perp_neg")])
def test_auto_dnp_workflow_runs_end_to_end_and_matches_the_all_in_one_node(host, use_llm, name, guidance):
    import folder_paths

    api = shipped(host, name)
    final, dns = final_and_dns(api)
    caption = ids(api, "NegGuideCaption")[0]
    out = host.execute(api, [final, dns, caption], executor=host.new_executor())
    text = out[caption][0]
    assert isinstance(text, str) and text
    saved = sorted(p.name for p in pathlib.Path(folder_paths.get_output_directory()).glob("negguide_*.png"))
    assert any(p.startswith("negguide_dns") for p in saved) and any("dnp" in p for p in saved)
    assert not torch.allclose(out[final][0]["samples"], out[dns][0]["samples"])

    g = tiny_graph(host.ckpt, prompt=api[api[dns]["inputs"]["positive"][0]]["inputs"]["text"])
    g["load"] = {"class_type": "NegGuideCaptionerLoader", "inputs": {"model_name": "blip", "dtype": "auto"}}
    g["auto"] = auto_node(final_guidance=guidance, cfg=7.5, seed=42, steps=2, max_new_tokens=12)
    image, dns_image, auto_text, latent = host.execute(g, ["auto"], executor=host.new_executor())["auto"]
    assert auto_text == text
    assert torch.equal(latent["samples"], out[final][0]["samples"])
    assert dns_image.shape == image.shape == (1, 64, 64, 3)


def auto_node(**overrides):
    inputs = {"model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2], "captioner": ["load", 0],
              "positive": ["pos", 0], "latent_image": ["latent", 0], "seed": 42, "steps": 2, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1.0, "cfg": 7.5, "dns_scale": -1.0, "final_guidance": "cfg",
              "neg_weight": 1.5, "caption_prompt": "", "max_new_tokens": 12, "images_per_call": 8, "unload_after": True}
    return {"class_type": "NegGuideAutoDNP", "inputs": dict(inputs, **overrides)}


def test_manual_workflow_runs(host):
    api = shipped(host, MANUAL)
    final, dns = final_and_dns(api)
    out = host.execute(api, [final, dns], executor=host.new_executor())
    assert torch.isfinite(out[final][0]["samples"]).all()


def test_dns_scale_minus_one_means_the_final_cfg(host, use_llm):
    def dns_image(**kw):
        g = tiny_graph(host.ckpt)
        g["load"] = {"class_type": "NegGuideCaptionerLoader", "inputs": {"model_name": "blip", "dtype": "auto"}}
        g["auto"] = auto_node(**kw)
        return host.execute(g, ["auto"])["auto"][1]
    same = dns_image(cfg=5.0, dns_scale=-1.0)
    assert torch.equal(same, dns_image(cfg=5.0, dns_scale=5.0))
    assert not torch.equal(same, dns_image(cfg=5.0, dns_scale=2.0))


def test_each_image_of_a_batch_gets_its_own_caption_as_negative(host, use_llm):
    g = tiny_graph(host.ckpt, batch=2)
    g["load"] = {"class_type": "NegGuideCaptionerLoader", "inputs": {"model_name": "blip", "dtype": "auto"}}
    g["auto"] = auto_node(seed=7)
    _, _, text, latent = host.execute(g, ["auto"])["auto"]
    captions = text.split("\n")
    assert len(captions) == 2 and captions[0] != captions[1], captions

    def alone(row, negative):
        """Batch element `row` sampled on its own (same noise) with a core KSampler and this negative."""
        one = tiny_graph(host.ckpt, batch=2, negative=negative)
        one["row"] = {"class_type": "LatentFromBatch", "inputs": {"samples": ["latent", 0], "batch_index": row, "length": 1}}
        one["ks"] = {"class_type": "KSampler", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0],
                     "latent_image": ["row", 0], "seed": 7, "steps": 2, "cfg": 7.5, "sampler_name": "euler",
                     "scheduler": "normal", "denoise": 1.0}}
        return host.execute(one, ["ks"])["ks"][0]["samples"]

    for i in range(2):
        row = latent["samples"][i:i + 1]
        scale = row.abs().max()
        own, other = [(row - alone(i, c)).abs().max() / scale for c in (captions[i], captions[1 - i])]
        print(f"row {i}: max |diff| / max |latent|: own caption {own:.1e}, other caption {other:.1e}")
        assert own < 1e-4 and other > 1e-2  # batched and single-sample CPU math differ by rounding only


def test_per_image_captions_stack_with_repeated_tokens_and_what_does_not_stack_is_refused(host):
    """auto-DNP stacks one caption per batch row with the view node's blend (one-hot rows)."""
    views = importlib.import_module(f"{host.pack.__name__}.guiders.views")

    def stack_rows(conds):
        return views.mix_conditionings(dict(enumerate(conds)), [{i: 1.0} for i in range(len(conds))])

    a = [[torch.randn(1, 77, 8), {"pooled_output": torch.randn(1, 4)}]]
    b = [[torch.randn(1, 154, 8), {"pooled_output": torch.randn(1, 4)}]]
    [[emb, extras]] = stack_rows([a, b])
    assert emb.shape == (2, 154, 8)
    assert torch.equal(emb[0], torch.cat([a[0][0][0]] * 2)) and torch.equal(emb[1], b[0][0][0])
    assert torch.equal(extras["pooled_output"], torch.cat([a[0][1]["pooled_output"], b[0][1]["pooled_output"]]))
    for other in ([[torch.randn(1, 77, 8), {"attention_mask": torch.ones(1, 77)}]], [[torch.randn(1, 77, 16), {}]]):
        with pytest.raises(ValueError):
            stack_rows([a, other])
