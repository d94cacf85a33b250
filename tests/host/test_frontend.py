"""The shipped workflows in the REAL ComfyUI frontend (headless system Chromium through playwright).

Each workflows/*.json is loaded through the app: no missing node types, no error dialog or page error, our
nodes keep their saved widget values; the app converts it to an API prompt, which the server runs (latents
shrunk to 64x64 and at most 2 steps so it stays fast on CPU). The "Add negative (NegGuide)" menu of js/negguide.js
is driven the way the canvas does it and the chain it builds is checked link by link, then run.
"""
import copy
import json

import pytest

from _server import browser_missing, comfy_server, frontend, server  # noqa: F401
from hostlib import ROOT

MISSING_BROWSER = browser_missing()
if MISSING_BROWSER:
    pytest.skip(MISSING_BROWSER, allow_module_level=True)

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
MENU = "Add negative (NegGuide)"

STATE_JS = """() => ({
  nodes: app.graph.nodes.map((n) => ({
    id: n.id, type: n.type, registered: n.type in LiteGraph.registered_node_types, has_errors: !!n.has_errors,
    widgets: (n.widgets ?? []).filter((w) => w.serialize !== false).map((w) => [w.name, w.value]),
  })),
  dialogs: [...document.querySelectorAll(".p-dialog")].filter((d) => d.offsetParent !== null)
    .map((d) => d.innerText.slice(0, 500)),
  toasts: [...document.querySelectorAll(".p-toast-message-error")].map((t) => t.innerText.slice(0, 500)),
})"""

# Links around one node: for each input, the [type, output slot] of the node feeding it.
LINKS_JS = """(id) => {
  const node = app.graph.getNodeById(id);
  return Object.fromEntries(node.inputs.map((input, i) => {
    const link = node.getInputLink(i);
    const from = link && app.graph.getNodeById(link.origin_id);
    return [input.name, from ? [from.type, from.id, link.origin_slot] : null];
  }));
}"""


@pytest.fixture(scope="module")
def page(comfy_server):
    with frontend(comfy_server) as (pg, errors):
        pg.errors = errors
        yield pg


def load(page, workflow: dict) -> dict:
    page.errors.clear()
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(300)  # let dialogs and toasts (if any) render before looking for them
    return page.evaluate(STATE_JS)


def to_api(page) -> dict:
    return page.evaluate("async () => (await app.graphToPrompt()).output")


def shrink(prompt: dict) -> dict:
    """Same graph, test-sized: 64x64 latents and at most 2 sampling steps."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs = node["inputs"]
        if "Latent" in node["class_type"]:
            for key in ("width", "height"):
                if isinstance(inputs.get(key), int):
                    inputs[key] = 64
        if isinstance(inputs.get("steps"), int):
            inputs["steps"] = min(inputs["steps"], 2)
    return prompt


def assert_loaded_cleanly(state, page, name):
    assert not [n for n in state["nodes"] if not n["registered"] or n["has_errors"]], f"{name}: missing node types"
    assert not state["dialogs"], f"{name}: dialogs shown: {state['dialogs']}"
    assert not state["toasts"], f"{name}: error toasts: {state['toasts']}"
    assert not page.errors, f"{name}: {page.errors}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_and_runs(server, page, path):
    workflow = json.loads(path.read_text())
    state = load(page, workflow)
    assert_loaded_cleanly(state, page, path.name)
    loaded = {n["id"]: n for n in state["nodes"]}
    assert sorted(loaded) == sorted(n["id"] for n in workflow["nodes"])
    info = server.object_info
    for saved in workflow["nodes"]:
        if not saved["type"].startswith("NegGuide"):
            continue
        node = loaded[saved["id"]]
        names = [name for name, _ in node["widgets"]]
        inputs = {**info[saved["type"]]["input"].get("required", {}), **info[saved["type"]]["input"].get("optional", {})}
        assert all(n in inputs or n == "control_after_generate" for n in names), (saved["type"], names)
        assert [v for _, v in node["widgets"]] == saved.get("widgets_values", []), (saved["type"], node["widgets"])

    prompt = to_api(page)
    assert {n["class_type"] for n in prompt.values()} >= {t for t in (n["type"] for n in workflow["nodes"])
                                                         if t.startswith("NegGuide")}
    entry = server.run(shrink(prompt))
    images = server.images(entry)
    assert images and all(p.is_file() for p in images), entry["outputs"]


def menu_entry(page, node_id):
    """The canvas's own context menu for the node; returns the labels it lists."""
    return page.evaluate("""(id) => app.canvas.getNodeMenuOptions(app.graph.getNodeById(id))
                              .filter(Boolean).map((o) => o.content)""", node_id)


def click_add_negative(page, node_id) -> int:
    """Runs the menu entry's callback as a click would; returns the id of the Add Negative node it made."""
    return page.evaluate("""([id, label]) => {
      const before = new Set(app.graph.nodes.map((n) => n.id));
      const entry = app.canvas.getNodeMenuOptions(app.graph.getNodeById(id)).find((o) => o?.content === label);
      entry.callback();
      return app.graph.nodes.find((n) => !before.has(n.id) && n.type === "NegGuideAddNegative").id;
    }""", [node_id, MENU])


def set_text(page, node_id, text):
    page.evaluate("""([id, text]) => { app.graph.getNodeById(id).widgets.find((w) => w.name === "text").value = text; }""",
                  [node_id, text])


def test_add_negative_menu_chains_negatives(server, page):
    workflow = json.loads((ROOT / "workflows" / "negguide_perp_neg.json").read_text())
    assert_loaded_cleanly(load(page, workflow), page, "negguide_perp_neg.json")
    guider = next(n["id"] for n in workflow["nodes"] if n["type"] == "NegGuidePerpNegGuider")
    ckpt = next(n["id"] for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple")
    assert MENU in menu_entry(page, guider)
    first = page.evaluate(LINKS_JS, guider)["more_negatives"][1]  # the workflow's own Add Negative

    chain = [first]
    for text in ("overhead view", "blurry"):  # the 2nd and 3rd extra negative
        new = click_add_negative(page, guider)
        links = page.evaluate(LINKS_JS, new)
        assert page.evaluate(LINKS_JS, guider)["more_negatives"] == ["NegGuideAddNegative", new, 0]
        assert links["previous"] == ["NegGuideAddNegative", chain[-1], 0], links
        encoder_type, encoder, _ = links["conditioning"]
        assert encoder_type == "CLIPTextEncode"
        assert page.evaluate(LINKS_JS, encoder)["clip"] == ["CheckpointLoaderSimple", ckpt, 1]
        set_text(page, encoder, text)
        chain.append(new)
    assert not page.errors, page.errors

    prompt = to_api(page)
    ids = [str(i) for i in chain]
    assert prompt[str(guider)]["inputs"]["more_negatives"] == [ids[-1], 0]
    assert [prompt[i]["inputs"].get("previous") for i in ids] == [None, [ids[0], 0], [ids[1], 0]]
    server.run(shrink(prompt))


def test_add_negative_menu_on_unchained_sampler(server, page):
    workflow = json.loads((ROOT / "workflows" / "negguide_perp_neg_ksampler.json").read_text())
    assert_loaded_cleanly(load(page, workflow), page, "negguide_perp_neg_ksampler.json")
    sampler = next(n["id"] for n in workflow["nodes"] if n["type"] == "NegGuidePerpNegSampler")
    assert page.evaluate(LINKS_JS, sampler)["more_negatives"] is None
    new = click_add_negative(page, sampler)
    links = page.evaluate(LINKS_JS, new)
    assert links["previous"] is None and links["conditioning"][0] == "CLIPTextEncode"
    assert page.evaluate(LINKS_JS, sampler)["more_negatives"] == ["NegGuideAddNegative", new, 0]
    assert MENU not in menu_entry(page, new)  # only on nodes with a more_negatives input
    set_text(page, links["conditioning"][1], "back view")
    server.run(shrink(to_api(page)))
