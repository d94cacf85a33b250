"""Debias View Prompts in a real ComfyUI: a tiny random BERT in models/bert, loaded offline; errors."""
import importlib
import importlib.util
import pathlib

import pytest

import _tiny_hf

_tiny_hf.hide_torchvision_stub()  # the tests' torchvision stand-in would otherwise break transformers' imports
PROMPT = "a smiling corgi with a red hat"
CORE = pathlib.Path(__file__).parents[1] / "core" / "test_debias_bert.py"


def _builder():
    spec = importlib.util.spec_from_file_location("negguide_tiny_bert", CORE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_bert


@pytest.fixture(scope="module")
def bert_dir(host):
    root = host.tmp / "bert_models"
    build = _builder()
    build(root / "tiny-bert")
    from transformers import BertConfig, BertModel
    (root / "no-head").mkdir(parents=True)
    BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(root / "no-head")
    (root / "empty").mkdir()
    (root / "empty" / "config.json").write_text('{"model_type": "bert"}')
    (root / "corrupt").mkdir()
    (root / "corrupt" / "config.json").write_text('{"model_type": "be')  # an interrupted download
    host.add_model_dir("bert", root)
    return root


def debias_graph(bert_model="tiny-bert", protected="", prompt=PROMPT):
    return {"debias": {"class_type": "NegGuideDebiasViewPrompts", "inputs": {
        "prompt": prompt, "bert_model": bert_model, "protected_words": protected, "threshold": 0.95}}}


def pack_module(host, name):
    return importlib.import_module(f"{host.pack.__name__}.{name}")


def test_node_equals_the_pure_function_on_the_reloaded_model(host, bert_dir):
    prompts, report = host.execute(debias_graph(), ["debias"])["debias"]
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    path = str(bert_dir / "tiny-bert")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True).eval()
    debias = pack_module(host, "guiders.debias")
    want, rows = debias.debias_prompt(PROMPT, debias.masked_lm_scorer(tok, model), ("front", "side", "back", "overhead"))
    assert prompts == want
    assert set(prompts) == {"front", "side", "back", "overhead"}
    removed = [r for r in rows if r["removed"]]
    assert removed, "the tiny random BERT should find some word against some view (seeded, so this is stable)"
    for r in removed:
        assert f"removed: '{r['word']}' from the {r['view']} view, ratio {r['ratio']:.3f}" in report


def test_protected_words_stay_and_view_node_uses_the_prompts(host, bert_dir):
    g = debias_graph(protected=PROMPT)
    g["ckpt"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": host.ckpt}}
    g["views"] = {"class_type": "NegGuideViewConditioning", "inputs": {
        "clip": ["ckpt", 1], "prompt": "ignored", "azimuths": "0, 180", "views": 0, "elevation": 0.0,
        "schedule": "threestudio", "front_range": 45.0, "back_range": 45.0, "overhead_threshold": 60.0,
        "weight_scale": 1.0, "front_template": "{p}, front view", "side_template": "{p}, side view",
        "back_template": "{p}, back view", "overhead_template": "{p}, overhead view", "view_prompts": ["debias", 0]}}
    out = host.execute(g, ["debias", "views"])
    assert all(p == PROMPT for p in out["debias"][0].values())
    assert f"    back: {PROMPT}, back view" in out["views"][4] and "ignored" not in out["views"][4]


def test_missing_or_broken_models_give_clear_errors(host, bert_dir):
    with pytest.raises(host.HostError, match="bert_model"):
        host.execute(debias_graph("bert-base-uncased"), ["debias"])
    node = host.nodes.NODE_CLASS_MAPPINGS["NegGuideDebiasViewPrompts"]
    nodes_debias = pack_module(host, "nodes.debias")
    for name, message in ((nodes_debias.FOLDER.none_found, "no masked language model.*models"), ("empty", "cannot load"),
                          ("no-head", "masked-LM head"), ("corrupt", "bert_model: folder .*corrupt: config.json cannot be read")):
        with pytest.raises(ValueError, match=message):
            node.execute(prompt=PROMPT, bert_model=name, protected_words="", threshold=0.95)
    with pytest.raises(ValueError, match="prompt"):
        node.execute(prompt="  ", bert_model="tiny-bert", protected_words="", threshold=0.95)
    assert "tiny-bert" in nodes_debias.FOLDER.names() and "no-head" in nodes_debias.FOLDER.names()
