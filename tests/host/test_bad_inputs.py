"""Bad inputs across the pack, through ComfyUI's own validate_prompt + executor: each is refused with a message that
names the input and says what to do, or takes a documented fallback; afterwards the host runs a good prompt as if
nothing happened. README.md ("When an input is wrong") lists the same table. Every test here also runs with all
sockets refused: no graph, loader or error path may open a connection."""
import json
import math
import socket

import pytest
import torch

import _tiny_hf
from hostlib import tiny_graph

_tiny_hf.hide_torchvision_stub()  # the tests' torchvision stand-in would otherwise break transformers' imports

NAN = float("nan")
DNG = {"cfg": 7.5, "lambda0": 15.0, "prior": 0.01, "tau": 0.25, "delta": 0.003, "p_min": 1e-6, "p_max": 0.99,
       "perpendicular": False, "per_element": True}
VIEW = {"prompt": "a corgi", "azimuths": "0, 90, 180, 270", "views": 0, "elevation": 0.0, "schedule": "threestudio",
        "front_range": 45.0, "back_range": 45.0, "overhead_threshold": 60.0, "weight_scale": 1.0,
        "front_template": "{p}, front view", "side_template": "{p}, side view", "back_template": "{p}, back view",
        "overhead_template": "{p}, overhead view"}
SD15 = [[torch.zeros(1, 77, 768), {}]]
SDXL = [[torch.zeros(1, 77, 2048), {"pooled_output": torch.zeros(1, 1280)}]]


def sampled(g, guider="guider", latent=("latent", 0), seed=1):
    """Adds SamplerCustomAdvanced "sca" (euler, 2 steps) driven by node `guider`."""
    g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
    g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "normal", "steps": 2,
                                                              "denoise": 1.0}}
    g["sca"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["noise", 0], "guider": [guider, 0],
                "sampler": ["sampler", 0], "sigmas": ["sigmas", 0], "latent_image": list(latent)}}
    return g


def dng(host, **over):
    g = tiny_graph(host.ckpt)
    g["guider"] = {"class_type": "NegGuideDNGGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                   "empty_conditioning": ["empty", 0], "unwanted": ["neg", 0], **DNG, **over}}
    return sampled(g)


def dng_sampler(host, **over):
    g = tiny_graph(host.ckpt)
    g["ks"] = {"class_type": "NegGuideDNGSampler", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "unwanted": ["neg", 0],
        **DNG, "latent_image": ["latent", 0], "seed": 1, "steps": 2, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1.0, **over}}
    return g


def perp_neg(host, batch=1, **over):
    g = tiny_graph(host.ckpt, batch=batch)
    g["guider"] = {"class_type": "NegGuidePerpNegGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                   "empty_conditioning": ["empty", 0], "cfg": 7.5, "negative": ["neg", 0], "neg_weight": 1.5, **over}}
    return sampled(g)


def views(host, **over):
    g = tiny_graph(host.ckpt)
    g["views"] = {"class_type": "NegGuideViewConditioning", "inputs": {"clip": ["ckpt", 1], **VIEW, **over}}
    return g


def view_batch(host, batch):
    """View Conditioning (4 views) into Perp-Neg with a latent batch of `batch`."""
    g = perp_neg(host, batch=batch, positive=["views", 0], empty_conditioning=["views", 1], more_negatives=["views", 2])
    del g["guider"]["inputs"]["negative"]
    g["views"] = {"class_type": "NegGuideViewConditioning", "inputs": {"clip": ["ckpt", 1], **VIEW}}
    return g


def plot(host, guider, latent, tau=0.31):
    g = dng(host, tau=tau)  # a guider no other case samples
    g["core"] = {"class_type": "CFGGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                                                       "negative": ["empty", 0], "cfg": 7.5}}
    g["plot"] = {"class_type": "NegGuideDNGPlot", "inputs": {"guider": [guider, 0], "latent": list(latent),
                                                             "width": 256, "height": 256}}
    return g


def nan_latent(g, at="latent"):
    g["bad"] = {"class_type": "LatentMultiply", "inputs": {"samples": [at, 0], "multiplier": NAN}}
    return g


def debias(host, bert_model, prompt="a corgi"):
    return {"d": {"class_type": "NegGuideDebiasViewPrompts", "inputs": {"prompt": prompt, "bert_model": bert_model,
                                                                        "protected_words": "", "threshold": 0.95}}}


def captioner(name):
    return {"c": {"class_type": "NegGuideCaptionerLoader", "inputs": {"model_name": name, "dtype": "fp32"}}}


def auto_dnp(host, **over):
    g = {**tiny_graph(host.ckpt), **captioner("blip")}
    g["auto"] = {"class_type": "NegGuideAutoDNP", "inputs": {
        "model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2], "captioner": ["c", 0], "positive": ["pos", 0],
        "latent_image": ["latent", 0], "seed": 1, "steps": 2, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1.0, "cfg": 7.5, "dns_scale": -1.0, "final_guidance": "cfg", "neg_weight": 1.5, "caption_prompt": "",
        "max_new_tokens": 8, "images_per_call": 8, "unload_after": True, **over}}
    return g


def direct(host, node_id, **inputs):
    """For inputs no core node can produce (a conditioning of another family): the node's own execute."""
    model = host.execute(tiny_graph(host.ckpt), ["ckpt"])["ckpt"][0]
    return host.nodes.NODE_CLASS_MAPPINGS[node_id].execute(model=model, **inputs)


# (case, build(host) -> (graph, output node) or a callable that raises, words the message must hold)
CASES = [
    ("dng prior 0", lambda h: (dng(h, prior=0.0), "sca"), ["prior", "smaller than min"]),
    ("dng prior 1", lambda h: (dng(h, prior=1.0), "sca"), ["prior", "bigger than max"]),
    ("dng prior NaN", lambda h: (dng(h, prior=NAN), "sca"), ["prior: nan is not a finite number", "set a number"]),
    ("dng p_min above p_max", lambda h: (dng(h, p_min=0.5, p_max=0.4), "sca"), ["p_min/p_max", "defaults"]),
    ("dng lambda0 NaN", lambda h: (dng(h, lambda0=NAN), "sca"), ["lambda0: nan", "set a number"]),
    ("dng cfg NaN", lambda h: (dng(h, cfg=NAN), "sca"), ["cfg: nan", "set a number in the widget's range"]),
    ("dng correction unknown", lambda h: (dng(h, correction="sometimes"), "sca"), ["correction 'sometimes'", "auto"]),
    ("dng window reversed", lambda h: (dng(h, negative_start=0.8, negative_end=0.2), "sca"),
     ["negative_start/negative_end", "set negative_start <= negative_end"]),
    ("dng NaN latent", lambda h: ({**nan_latent(dng(h)), "sca": {**dng(h)["sca"], "inputs": {
        **dng(h)["sca"]["inputs"], "latent_image": ["bad", 0]}}}, "sca"), ["latent_image", "NaN", "Fix the node"]),
    ("dng unwanted of another family", lambda h: lambda: direct(h, "NegGuideDNGGuider", positive=SD15,
     empty_conditioning=SD15, unwanted=SDXL, **DNG), ["unwanted", "different model family", "encode every prompt"]),
    ("dng ksampler unknown sampler", lambda h: (dng_sampler(h, sampler_name="euler_magic"), "ks"),
     ["sampler_name", "unknown value 'euler_magic'", "pick one"]),
    ("dng ksampler unknown scheduler", lambda h: (dng_sampler(h, scheduler="cosine_dream"), "ks"),
     ["scheduler", "unknown value 'cosine_dream'", "pick one"]),
    ("plot of a core guider", lambda h: (plot(h, "core", ("sca", 0)), "plot"), ["guider", "DNG Guider (NegGuide)"]),
    ("plot before sampling", lambda h: (plot(h, "guider", ("latent", 0), tau=0.32), "plot"),
     ["guider", "not sampled yet", "Connect the LATENT output"]),
    ("plot of a latent the guider never produced", lambda h: ({**plot(h, "guider", ("bad2", 0)), "bad2": {
        "class_type": "LatentMultiply", "inputs": {"samples": ["sca", 0], "multiplier": 0.5}}}, "plot"),
     ["latent: no run of this DNG guider", "Connect the first LATENT output"]),
    ("perp-neg neg_weight NaN", lambda h: (perp_neg(h, neg_weight=NAN), "sca"), ["neg_weight: nan", "set a number"]),
    ("perp-neg score clip NaN", lambda h: (perp_neg(h, score_clip_start=NAN), "sca"),
     ["score_clip_start: nan", "set a number"]),
    ("perp-neg negative_start NaN", lambda h: (perp_neg(h, negative_start=NAN), "sca"),
     ["negative_start: nan", "between 0 and 1"]),
    ("perp-neg cfg NaN", lambda h: (perp_neg(h, cfg=NAN), "sca"), ["cfg: nan", "set a number"]),
    ("add negative weight NaN", lambda h: ({**perp_neg(h, more_negatives=["add", 0]), "add": {
        "class_type": "NegGuideAddNegative", "inputs": {"conditioning": ["neg", 0], "weight": NAN}}}, "sca"),
     ["negative #1: weight nan", "finite numbers >= 0"]),
    ("view batch mismatch", lambda h: (view_batch(h, 3), "sca"),
     ["view negative 1", "latent batch must be 4", "4 per-sample weights for a latent batch of 3"]),
    ("dns scale NaN", lambda h: ({**tiny_graph(h.ckpt), "guider": {"class_type": "NegGuideDNSGuider", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "dns_scale": NAN}}},
        "guider"), ["dns_scale: nan", "set a number"]),
    ("auto-dnp unknown final_guidance", lambda h: (auto_dnp(h, final_guidance="perp"), "auto"),
     ["final_guidance: unknown value 'perp'", "cfg, perp_neg"]),
    ("auto-dnp dns_scale NaN", lambda h: (auto_dnp(h, dns_scale=NAN), "auto"), ["dns_scale: nan", "set a number"]),
    ("views garbage azimuth", lambda h: (views(h, azimuths="0, north, 180"), "views"),
     ["azimuths: 'north' is not a number", "e.g. \"0, 90, 180, 270\""]),
    ("views no azimuth", lambda h: (views(h, azimuths=" , "), "views"), ["azimuths: no azimuth given", "set views"]),
    ("views elevation 120", lambda h: (views(h, elevation=120.0), "views"), ["elevation", "bigger than max of 90"]),
    ("views elevation NaN", lambda h: (views(h, elevation=NAN), "views"), ["elevation: nan is outside [-90, 90]"]),
    ("views empty prompt", lambda h: (views(h, prompt="   "), "views"), ["prompt: empty prompt", "write what the object is"]),
    ("views template without {p}", lambda h: (views(h, back_template="back view"), "views"),
     ["back_template", "has no {p}", "write e.g."]),
    ("views unknown schedule", lambda h: (views(h, schedule="spiral"), "views"), ["schedule", "'spiral'", "choose one of"]),
    ("debias empty prompt", lambda h: (debias(h, "tiny", prompt=""), "d"), ["prompt: empty prompt"]),
    ("debias missing BERT", lambda h: (debias(h, "bert-base-uncased"), "d"),
     ["bert_model: no masked language model 'bert-base-uncased'", "Installed: ", "Pick one of them"]),
    ("debias corrupt BERT config", lambda h: (debias(h, "corrupt_config"), "d"),
     ["bert_model", "config.json cannot be read", "download the model folder again"]),
    ("debias remote-code BERT", lambda h: (debias(h, "remote_code"), "d"),
     ["bert_model", "its own Python code", "trust_remote_code=False"]),
    ("captioner missing", lambda h: (captioner("blip-image-captioning-large"), "c"),
     ["model_name: no captioner 'blip-image-captioning-large'", "Pick one of them"]),
    ("captioner corrupt config", lambda h: (captioner("corrupt_config"), "c"),
     ["captioner folder", "config.json cannot be read", "download the model folder again"]),
    ("captioner remote code", lambda h: (captioner("remote_code"), "c"),
     ["captioner folder", "its own Python code", "trust_remote_code=False", "converted"]),
]


@pytest.fixture(scope="module")
def model_dirs(host, tmp_path_factory):
    """models/bert and models/LLM for this module: a tiny BERT plus broken folders, and broken captioner folders."""
    import importlib.util

    from hostlib import ROOT
    spec = importlib.util.spec_from_file_location("negguide_tiny_bert", ROOT / "tests" / "core" / "test_debias_bert.py")
    bert_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bert_module)
    roots = {}
    for kind in ("bert", "LLM"):
        root = roots[kind] = tmp_path_factory.mktemp(kind)
        for name, config in {"corrupt_config": '{"model_type": "bert", ',
                             "remote_code": json.dumps({"model_type": "my_model", "auto_map": {
                                 "AutoConfig": "code.MyConfig", "AutoModelForMaskedLM": "code.MyModel",
                                 "AutoModelForImageTextToText": "code.MyModel"}})}.items():
            (root / name).mkdir()
            (root / name / "config.json").write_text(config)
    bert_module.build_tiny_bert(roots["bert"] / "tiny")
    _tiny_hf.blip(roots["LLM"] / "blip")
    return roots


@pytest.fixture(autouse=True)
def no_network(host, model_dirs, monkeypatch):
    """Sockets refused and recorded; the module's model folders in place of the real ones."""
    import folder_paths
    for kind, root in model_dirs.items():
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, ([str(root)], set()))
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a NegGuide test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    assert attempts == [], "a graph tried to open a connection"


@pytest.mark.parametrize("case, build, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(host, case, build, words):
    made = build(host)
    with pytest.raises((host.HostError, ValueError)) as err:
        if callable(made):
            made()
        else:
            host.execute(made[0], [made[1]])
    message = str(err.value)
    for w in words:
        assert w in message, f"{case}: {w!r} not in {message!r}"


def test_the_table_is_big_and_distinct():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


def test_after_bad_prompts_the_next_good_one_runs_as_in_a_fresh_host(host):
    ex = host.new_executor()
    good = view_batch(host, 4)
    for case in ("view batch mismatch", "dng NaN latent", "debias corrupt BERT config", "dng prior NaN"):
        graph, out = next(c[1] for c in CASES if c[0] == case)(host)
        with pytest.raises(host.HostError):
            host.execute(graph, [out], executor=ex)
    after = host.execute(good, ["sca"], executor=ex)["sca"][0]["samples"]
    fresh = host.execute(good, ["sca"], executor=host.new_executor())["sca"][0]["samples"]
    assert after.shape == (4, 4, 8, 8) and torch.isfinite(after).all() and torch.equal(after, fresh)


def test_documented_fallbacks(host):
    """Inputs that are odd but meaningful run, doing what the docs say."""
    # zero-norm direction: positive == empty prompt, so e_pos = 0 and Perp-Neg removes the whole negative (CEBM)
    same = host.execute(perp_neg(host, positive=["empty", 0]), ["sca"])["sca"][0]["samples"]
    assert torch.isfinite(same).all()
    # a prior outside [p_min, p_max] is clamped into it: the first step uses p_max
    g = dng(host, prior=0.5, p_max=0.4)
    out = host.execute(g, ["guider", "sca"])
    dng_part = next(t for t in out["guider"][0].technique.parts() if hasattr(t, "history"))
    assert math.isclose(float(dng_part.history()["p"][0, 0]), 0.4, rel_tol=1e-5)
    # azimuths beyond +-180 wrap around: 450 degrees is the side view at 90
    info = host.execute(views(host, azimuths="450"), ["views"])["views"][4]
    assert "azimuth 450 (= 90)" in info
