"""The shipped workflows in the REAL ComfyUI frontend (headless system Chromium through playwright).

Each workflows/*.json is loaded through the app: no missing node types, no error dialog or page error, our
nodes keep their saved widget values; the app converts it to an API prompt, which the server runs (latents
shrunk to 64x64 and at most 2 steps so it stays fast on CPU). The "Add negative (NegGuide)" menu of js/negguide.js
is clicked in the canvas's own right-click menu and the chain it builds is checked link by link, then run.
"""
import copy
import json

import pytest

from _server import PACK_DIR, browser_missing, comfy_server_fixture, frontend, server_fixture  # noqa: F401
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

# Links into one node: for each input, [type, id, output slot] of the node feeding it, or null.
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


def check_widgets(node_info: dict, widgets: list, node_type: str):
    """Every widget is an input of the node and holds a value its input accepts: values saved in another
    widget order (a schema change) land in the wrong widget and fail here."""
    inputs = {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}
    for name, value in widgets:
        where = f"{node_type}.{name} = {value!r}"
        if name == "control_after_generate":
            assert value in ("fixed", "increment", "decrement", "randomize"), where
            continue
        assert name in inputs, f"{where}: not an input"
        kind, opts = inputs[name][0], (inputs[name][1] if len(inputs[name]) > 1 else {})
        if isinstance(kind, list) or kind == "COMBO":
            assert value in (kind if isinstance(kind, list) else opts["options"]), where
        elif kind in ("INT", "FLOAT"):
            assert isinstance(value, (int, float)) and not isinstance(value, bool), where
            assert kind == "FLOAT" or float(value).is_integer(), where
            assert opts.get("min", value) <= value <= opts.get("max", value), where
        elif kind == "STRING":
            assert isinstance(value, str), where
        elif kind == "BOOLEAN":
            assert isinstance(value, bool), where


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
    for saved in workflow["nodes"]:
        if saved["type"].startswith("NegGuide"):
            node = loaded[saved["id"]]
            assert [v for _, v in node["widgets"]] == saved.get("widgets_values", []), (saved["type"], node["widgets"])
            check_widgets(server.object_info[saved["type"]], node["widgets"], saved["type"])

    prompt = to_api(page)
    assert {n["class_type"] for n in prompt.values()} >= {t for t in (n["type"] for n in workflow["nodes"])
                                                         if t.startswith("NegGuide")}
    entry = server.run(shrink(prompt))
    images = server.images(entry)
    assert images and all(p.is_file() for p in images), entry["outputs"]


def test_template_browser_lists_and_opens_ours(page):
    """Templates > Custom Nodes > negguide lists every shipped workflow; a click opens it."""
    page.errors.clear()
    page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    dialog = page.locator(".p-dialog")
    dialog.get_by_text(PACK_DIR, exact=True).click()
    for path in WORKFLOWS:
        assert dialog.get_by_text(path.stem, exact=True).is_visible(), path.stem
    dialog.get_by_text("negguide_perp_neg", exact=True).click()
    dialog.wait_for(state="detached")
    saved = json.loads((ROOT / "workflows" / "negguide_perp_neg.json").read_text())
    assert sorted(n["type"] for n in page.evaluate(STATE_JS)["nodes"]) == sorted(n["type"] for n in saved["nodes"])
    assert not page.errors, page.errors


def menu_entry(page, node_id):
    """The canvas's own context menu for the node; returns the labels it lists."""
    return page.evaluate("""(id) => app.canvas.getNodeMenuOptions(app.graph.getNodeById(id))
                              .filter(Boolean).map((o) => o.content)""", node_id)


def click_add_negative(page, node_id) -> int:
    """Right-clicks the node's title on the canvas and clicks the menu entry, as a user does; returns the id
    of the Add Negative node that appeared."""
    before = set(page.evaluate("() => app.graph.nodes.map((n) => n.id)"))
    x, y = page.evaluate("""(id) => {
      const n = app.graph.getNodeById(id);
      const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT / 2]);
      const r = app.canvas.canvas.getBoundingClientRect();
      return [x + r.left, y + r.top];
    }""", node_id)
    page.mouse.click(x, y, button="right")
    page.locator(".litecontextmenu .litemenu-entry", has_text=MENU).click()
    new = page.evaluate("() => app.graph.nodes.filter((n) => n.type === 'NegGuideAddNegative').map((n) => n.id)")
    [added] = [i for i in new if i not in before]
    return added


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


def test_checks_catch_a_missing_node_type(page):
    """The load checks above can fail: a node type the server does not know is reported (dialog and node)."""
    workflow = json.loads((ROOT / "workflows" / "negguide_perp_neg_ksampler.json").read_text())
    next(n for n in workflow["nodes"] if n["type"] == "NegGuidePerpNegSampler")["type"] = "NegGuideNoSuchNode"
    state = load(page, workflow)
    try:
        with pytest.raises(AssertionError, match="missing node types"):
            assert_loaded_cleanly(state, page, "broken")
        assert any("NegGuideNoSuchNode" in d for d in state["dialogs"]), state["dialogs"]
    finally:
        page.keyboard.press("Escape")
