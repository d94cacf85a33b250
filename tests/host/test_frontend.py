"""The shipped templates and the pack's JS in the REAL ComfyUI frontend (headless system Chromium, playwright).

Each example_workflows/*.json is loaded through the app: no missing node types, no error dialog or page error,
our nodes keep their saved widget values, the graph fits one 1600x1000 screen without overlapping nodes; the app
converts it to an API prompt, which the server runs (latents shrunk to 64x64 and at most 2 steps so it stays fast
on CPU). The template browser lists every template with its thumbnail. The "Add negative (NegGuide)" menu is
clicked in the canvas's own right-click menu, the chain it builds is checked link by link, placed on screen, run.
The azimuth dial of View Conditioning is drawn, agrees with guiders/views.py and edits the azimuths when dragged.
Screenshots of what was checked are kept in the pytest tmp dir (printed paths).
"""
import contextlib
import copy
import json

import pytest

from _server import PACK_DIR, RUN_TIMEOUT, browser_missing, comfy_server_fixture, frontend, server_fixture  # noqa: F401
from hostlib import ROOT
from tiny_loader_nodes import SWAPS, swap_loaders

MISSING_BROWSER = browser_missing()
if MISSING_BROWSER:
    pytest.skip(MISSING_BROWSER, allow_module_level=True)
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402 (only once playwright is known to be there)

TEMPLATES = ROOT / "example_workflows"
WORKFLOWS = sorted(TEMPLATES.glob("*.json"))
PERP_NEG, PERP_NEG_KSAMPLER, TURNAROUND = (TEMPLATES / f"{n}.json" for n in (
    "Perp-Neg guider with two negatives", "Perp-Neg KSampler", "Turnaround four views in one batch"))
MENU = "Add negative (NegGuide)"
MIN_SCALE = 0.6  # a template opens at least this zoomed in, or its text is too small to read
# Templates for families whose checkpoints ComfyUI only recognises at full size: their loaders are swapped for the
# tiny models of that family (tiny_loader_nodes.py) in the API prompt; the rest of the graph runs as saved.
FAMILIES = {"SDXL Perp-Neg KSampler": "sdxl", "Flux dev negative prompt at cfg 1": "flux",
            "Wan 2.1 text to video with Perp-Neg": "wan21", "SD3.5 DNG dynamic negative": "sd3"}

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
        pg.errors = errors  # page errors and console errors (any script)
        # and every console warning raised from the pack's own scripts
        pg.on("console", lambda m: m.type == "warning" and f"/extensions/{PACK_DIR}/" in m.location.get("url", "")
              and errors.append(f"warning from our JS: {m.text}"))
        yield pg


def load(page, workflow: dict) -> dict:
    page.errors.clear()
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(300)  # let dialogs and toasts (if any) render before looking for them
    return page.evaluate(STATE_JS)


def to_api(page) -> dict:
    return page.evaluate("async () => (await app.graphToPrompt()).output")


def shrink(prompt: dict) -> dict:
    """Same graph, test-sized: 64x64 latents, at most 5 video frames and at most 2 sampling steps."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs = node["inputs"]
        if "Latent" in node["class_type"]:
            for key in ("width", "height"):
                if isinstance(inputs.get(key), int):
                    inputs[key] = 64
            if isinstance(inputs.get("length"), int):
                inputs["length"] = min(inputs["length"], 5)
        if isinstance(inputs.get("steps"), int):
            inputs["steps"] = min(inputs["steps"], 2)
        if node["class_type"] == "NegGuideDistill3D":  # 8^3 grid, 8x8 latent renders: seconds on a CPU
            inputs.update(grid=8, render_size=8)
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


# Screen rectangles (title bar included) of nodes, in canvas element pixels, plus the canvas size and zoom.
SCREEN_JS = """(ids) => {
  const c = app.canvas, t = LiteGraph.NODE_TITLE_HEIGHT, r = c.canvas.getBoundingClientRect();
  const nodes = (ids ?? app.graph.nodes.map((n) => n.id)).map((id) => app.graph.getNodeById(id));
  return {scale: c.ds.scale, width: r.width, height: r.height, nodes: nodes.map((n) => [n.id, n.title,
    ...c.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - t]), ...c.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]])])};
}"""


def off_screen(screen: dict) -> list:
    return [n[1] for n in screen["nodes"] if n[2] < 0 or n[3] < 0 or n[4] > screen["width"] or n[5] > screen["height"]]


def overlapping(screen: dict) -> list:
    rects = screen["nodes"]
    return [(a[1], b[1]) for i, a in enumerate(rects) for b in rects[i + 1:]
            if a[2] < b[4] and b[2] < a[4] and a[3] < b[5] and b[3] < a[5]]


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
    if path.stem in FAMILIES:
        prompt = swap_loaders(prompt, FAMILIES[path.stem])
    entry = server.run(shrink(prompt))
    images = server.images(entry)
    assert images and all(p.is_file() for p in images), entry["outputs"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_template_fits_one_screen_and_says_what_to_do(comfy_server, page, path, tmp_path):
    """Opened at 1600x1000 the whole graph is on the canvas at a readable zoom, no node hides another, and its
    note says which model to pick in each of its loaders (by the name the loader shows)."""
    workflow = json.loads(path.read_text())
    load(page, workflow)
    page.wait_for_timeout(200)
    screen = page.evaluate(SCREEN_JS, None)
    page.screenshot(path=tmp_path / f"{path.stem}.png")
    print(f"screenshot: {tmp_path / path.stem}.png")
    assert screen["scale"] >= MIN_SCALE, f"{path.stem} opens at {screen['scale']:.2f}"
    assert not off_screen(screen), f"{path.stem}: off screen {off_screen(screen)}"
    assert not overlapping(screen), f"{path.stem}: overlapping nodes {overlapping(screen)}"
    [note] = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note"]
    loaders = {comfy_server.object_info[n["type"]]["display_name"] or n["type"]  # the frontend shows the id if unnamed
               for n in workflow["nodes"] if n["type"] in SWAPS}
    assert loaders and "pick your" in note and all(name in note for name in loaders), (loaders, note)


def test_template_browser_lists_every_template_with_its_thumbnail(page, tmp_path):
    """Templates > Custom Nodes > negguide: a card per template whose thumbnail loaded (no 404); a click opens it."""
    page.errors.clear()
    failed = []
    page.on("response", lambda r: "/workflow_templates/" in r.url and r.status >= 400 and failed.append(r.url))
    page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    dialog = page.locator(".p-dialog")
    dialog.get_by_text(PACK_DIR, exact=True).click()
    shown = page.evaluate("() => [...document.querySelectorAll('.p-dialog img')].map((img) => img.alt)")
    assert sorted(shown) == sorted(p.stem for p in WORKFLOWS), shown
    # Top to bottom, as a user scrolls: the dialog unloads the thumbnails of cards scrolled out of view.
    for path in sorted(WORKFLOWS, key=lambda p: shown.index(p.stem)):
        title = dialog.get_by_role("heading", name=path.stem, exact=True)
        title.scroll_into_view_if_needed()
        assert title.is_visible(), path.stem
        # The card's image (alt = the template's name) is loaded lazily, as a blob, once the card scrolls into view;
        # the element may be replaced when it loads, so look it up afresh each time.
        try:
            page.wait_for_function("(name) => [...document.querySelectorAll('.p-dialog img')].some((img) => "
                                   "img.alt === name && img.complete && img.naturalWidth > 0)", arg=path.stem, timeout=20_000)
        except PlaywrightTimeout:
            cards = page.evaluate("() => [...document.querySelectorAll('.p-dialog img')].map((i) => [i.alt, i.naturalWidth])")
            raise AssertionError(f"{path.stem}: thumbnail never loaded; images in the dialog: {cards}") from None
    page.screenshot(path=tmp_path / "template_browser.png")
    assert not failed, failed
    dialog.get_by_role("heading", name=PERP_NEG.stem, exact=True).click()
    dialog.wait_for(state="detached")
    saved = json.loads(PERP_NEG.read_text())
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


def titles(page, ids):
    return page.evaluate("(ids) => ids.map((id) => app.graph.getNodeById(id).title)", ids)


def test_add_negative_menu_chains_negatives(server, page, tmp_path):
    workflow = json.loads(PERP_NEG.read_text())
    assert_loaded_cleanly(load(page, workflow), page, PERP_NEG.name)
    guider = next(n["id"] for n in workflow["nodes"] if n["type"] == "NegGuidePerpNegGuider")
    ckpt = next(n["id"] for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple")
    assert menu_entry(page, guider).count(MENU) == 1
    first = page.evaluate(LINKS_JS, guider)["more_negatives"][1]  # the workflow's own Add Negative

    chain = [first]
    for number, text in ((3, "overhead view"), (4, "blurry")):  # the guider already has two negatives
        page.evaluate("(id) => { app.canvas.centerOnNode(app.graph.getNodeById(id)); app.canvas.setDirty(true, true); }", guider)
        page.wait_for_timeout(150)  # one frame: the canvas finds nodes under the mouse among those it last drew
        new = click_add_negative(page, guider)
        links = page.evaluate(LINKS_JS, new)
        assert page.evaluate(LINKS_JS, guider)["more_negatives"] == ["NegGuideAddNegative", new, 0]
        assert links["previous"] == ["NegGuideAddNegative", chain[-1], 0], links
        encoder_type, encoder, _ = links["conditioning"]
        assert encoder_type == "CLIPTextEncode"
        assert page.evaluate(LINKS_JS, encoder)["clip"] == ["CheckpointLoaderSimple", ckpt, 1]
        assert titles(page, [encoder, new]) == [f"Negative {number}", f"Negative {number} (weight)"]
        screen = page.evaluate(SCREEN_JS, [encoder, new])
        page.screenshot(path=tmp_path / f"add_negative_{number}.png")
        assert not off_screen(screen), f"the new nodes are not in view: {screen}"
        # Left to right: prompt box, then Add Negative, then the guider it feeds; nothing is hidden under them.
        x = {i: page.evaluate("(id) => app.graph.getNodeById(id).pos[0]", i) for i in (encoder, new, guider)}
        assert x[encoder] < x[new] < x[guider], x
        assert not overlapping(page.evaluate(SCREEN_JS, None)), "the new nodes overlap others"
        set_text(page, encoder, text)
        chain.append(new)
    assert not page.errors, page.errors

    prompt = to_api(page)
    ids = [str(i) for i in chain]
    assert prompt[str(guider)]["inputs"]["more_negatives"] == [ids[-1], 0]
    assert [prompt[i]["inputs"].get("previous") for i in ids] == [None, [ids[0], 0], [ids[1], 0]]
    server.run(shrink(prompt))


def test_add_negative_menu_on_unchained_sampler(server, page):
    workflow = json.loads(PERP_NEG_KSAMPLER.read_text())
    assert_loaded_cleanly(load(page, workflow), page, PERP_NEG_KSAMPLER.name)
    sampler = next(n["id"] for n in workflow["nodes"] if n["type"] == "NegGuidePerpNegSampler")
    assert page.evaluate(LINKS_JS, sampler)["more_negatives"] is None
    new = click_add_negative(page, sampler)
    links = page.evaluate(LINKS_JS, new)
    assert links["previous"] is None and links["conditioning"][0] == "CLIPTextEncode"
    assert titles(page, [links["conditioning"][1]]) == ["Negative 2"]
    assert page.evaluate(LINKS_JS, sampler)["more_negatives"] == ["NegGuideAddNegative", new, 0]
    assert MENU not in menu_entry(page, new)  # only on nodes with a more_negatives input
    set_text(page, links["conditioning"][1], "back view")
    server.run(shrink(to_api(page)))


def test_add_negative_is_offered_through_the_new_menu_hook(page):
    """Frontends with getNodeMenuItems collect the entry from the extension (1.27 uses the fallback above)."""
    load(page, json.loads(PERP_NEG_KSAMPLER.read_text()))
    items = page.evaluate("""() => {
      const ext = app.extensions.find((e) => e.name === "NegGuide");
      return app.graph.nodes.map((n) => [n.type, ext.getNodeMenuItems(n).map((i) => i.content)]);
    }""")
    assert {t for t, entries in items if entries == [MENU]} == {"NegGuidePerpNegSampler"}, items


def dial(page, node_id):
    """The dial's dots (page pixels) and what it shows: azimuths, views and weights per image."""
    return page.evaluate("""async (id) => {
      const node = app.graph.getNodeById(id), c = app.canvas, r = c.canvas.getBoundingClientRect();
      const m = await import(`/extensions/${PACK}/view_dial.js`);
      const dots = node.widgets.find((w) => w.name === "azimuth_dial").dots()
        .map(([x, y]) => c.ds.convertOffsetToCanvas([node.pos[0] + x, node.pos[1] + y]))
        .map(([x, y]) => [x + r.left, y + r.top]);
      return {dots, ...m.dialState(node)};
    }""".replace("${PACK}", PACK_DIR), node_id)


def set_widgets(page, node_id, values: dict):
    page.evaluate("""([id, values]) => { const n = app.graph.getNodeById(id);
      for (const [k, v] of Object.entries(values)) n.widgets.find((w) => w.name === k).value = v;
      app.canvas.setDirty(true, true); }""", [node_id, values])


@pytest.fixture
def turnaround(page):
    workflow = json.loads(TURNAROUND.read_text())
    assert_loaded_cleanly(load(page, workflow), page, TURNAROUND.name)
    return {n["type"]: n["id"] for n in workflow["nodes"]}


@pytest.mark.parametrize("settings", [
    {},
    {"schedule": "stable-dreamfusion", "front_range": 22.5, "weight_scale": 0.5},
    {"back_range": 30.0, "azimuths": "-10, 45, 100, 170, 350"},
    {"elevation": 75.0},
], ids=["defaults", "sdf-narrow-front", "back-range", "overhead"])
def test_azimuth_dial_shows_the_weights_the_node_uses(page, turnaround, settings):
    from negguide.guiders.views import parse_azimuths, view_mix

    views = turnaround["NegGuideViewConditioning"]
    set_widgets(page, views, {"azimuths": "0, 30, 90, 135, 180, 225, 300", **settings})
    shown = dial(page, views)
    node = dict(next(n for n in page.evaluate(STATE_JS)["nodes"] if n["id"] == views)["widgets"])
    expected = [view_mix(a, node["elevation"], node["schedule"], node["front_range"], node["back_range"],
                         node["overhead_threshold"], node["weight_scale"]) for a in parse_azimuths(node["azimuths"], node["views"])]
    assert [m["view"] for m in shown["mixes"]] == [e.view for e in expected]
    for m, e in zip(shown["mixes"], expected):
        assert [v for v, _ in m["negatives"]] == [v for v, _ in e.negatives]
        assert [w for _, w in m["negatives"]] == pytest.approx([w for _, w in e.negatives], abs=1e-9), (m, e)
    assert not page.errors, page.errors


def test_azimuth_dial_renders_and_dragging_edits_the_azimuths(page, turnaround, tmp_path):
    views = turnaround["NegGuideViewConditioning"]
    page.evaluate("(id) => { app.canvas.centerOnNode(app.graph.getNodeById(id)); app.canvas.setDirty(true, true); }", views)
    page.wait_for_timeout(200)
    before = dial(page, views)
    assert len(before["dots"]) == 4
    # Each dot is drawn in its view's colour (front green, side amber, back red): sample the canvas there.
    colours = page.evaluate("""(dots) => { const c = app.canvas.canvas, r = c.getBoundingClientRect(), k = c.width / r.width;
      return dots.map(([x, y]) => [...c.getContext("2d").getImageData(Math.round((x - r.left) * k), Math.round((y - r.top) * k), 1, 1).data]); }""",
                            before["dots"])
    expected = {"front": (0x4C, 0xAF, 0x50), "side": (0xFF, 0xB3, 0x00), "back": (0xE5, 0x39, 0x35)}
    for colour, mix in zip(colours, before["mixes"]):
        assert colour[:3] == pytest.approx(expected[mix["view"]], abs=40), (colour, mix["view"])
    page.screenshot(path=tmp_path / "dial_before.png")

    # Drag image 2 (90 degrees, on the right) to the top of the dial (the back, 180 degrees).
    (x, y), (top_x, top_y) = before["dots"][1], before["dots"][2]
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 6):
        page.mouse.move(x + (top_x - x) * i / 5, y + (top_y - y) * i / 5)
    page.mouse.up()
    page.screenshot(path=tmp_path / "dial_after.png")
    after = page.evaluate("(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'azimuths').value", views)
    assert after == "0, 180, 180, 270", after
    assert [m["view"] for m in dial(page, views)["mixes"]] == ["front", "back", "back", "side"]
    assert not page.errors, page.errors


def test_turnaround_has_one_prompt_and_runs_without_debias(server, page, turnaround):
    """One prompt box feeds both nodes; deleting Debias View Prompts (no BERT) takes its report preview along
    and the rest still runs on the same prompt."""
    views, debias = turnaround["NegGuideViewConditioning"], turnaround["NegGuideDebiasViewPrompts"]
    prompt_box = turnaround["PrimitiveStringMultiline"]
    assert page.evaluate(LINKS_JS, views)["prompt"][:2] == ["PrimitiveStringMultiline", prompt_box]
    assert page.evaluate(LINKS_JS, debias)["prompt"][:2] == ["PrimitiveStringMultiline", prompt_box]
    page.evaluate("(id) => { app.canvas.deselectAll(); app.canvas.select(app.graph.getNodeById(id)); }", debias)
    page.locator("canvas#graph-canvas").focus()
    page.keyboard.press("Delete")
    with contextlib.suppress(PlaywrightTimeout):  # the JS tidies up right after the deletion has finished
        page.wait_for_function("() => app.graph.nodes.filter((n) => n.type === 'PreviewAny').length < 2", timeout=5000)
    state = page.evaluate(STATE_JS)
    types = [n["type"] for n in state["nodes"]]
    assert "NegGuideDebiasViewPrompts" not in types and types.count("PreviewAny") == 1, types
    assert page.evaluate(LINKS_JS, views)["prompt"][:2] == ["PrimitiveStringMultiline", prompt_box]
    prompt = to_api(page)
    assert prompt[str(views)]["inputs"]["prompt"] == [str(prompt_box), 0]
    server.run(shrink(prompt))
    assert not page.errors, page.errors


@pytest.mark.parametrize("node_type", ["NegGuidePerpNegGuider", "NegGuideViewConditioning"])
def test_help_panel_shows_our_page(page, node_type, tmp_path):
    """Select a node, click (i) in the bar above it: the side panel renders js/docs/<node id>.md, pictures too."""
    load(page, {"last_node_id": 0, "last_link_id": 0, "nodes": [], "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4})
    x, y = page.evaluate("""(type) => {
      const n = LiteGraph.createNode(type); n.pos = [300, 200]; app.graph.add(n);
      app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0]; app.canvas.setDirty(true, true);
      const r = app.canvas.canvas.getBoundingClientRect();
      return [r.left + 300 + n.size[0] / 2, r.top + 200 - LiteGraph.NODE_TITLE_HEIGHT / 2];
    }""", node_type)
    page.wait_for_timeout(150)
    page.mouse.click(x, y)
    page.locator("[data-testid=info-button]").click()
    title = page.evaluate("(type) => LiteGraph.registered_node_types[type].title", node_type)
    help_page = page.locator(".node-help-content")
    help_page.get_by_role("heading", name=title, exact=True).wait_for()
    assert help_page.get_by_role("heading", name="Inputs").is_visible()
    for img in help_page.locator("img").element_handles():
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=img, timeout=10_000)
    page.screenshot(path=tmp_path / f"help_{node_type}.png")
    page.keyboard.press("Escape")
    assert not page.errors, page.errors


def test_checks_catch_a_missing_node_type(page):
    """The load checks above can fail: a node type the server does not know is reported (dialog and node)."""
    workflow = json.loads(PERP_NEG_KSAMPLER.read_text())
    next(n for n in workflow["nodes"] if n["type"] == "NegGuidePerpNegSampler")["type"] = "NegGuideNoSuchNode"
    state = load(page, workflow)
    try:
        with pytest.raises(AssertionError, match="missing node types"):
            assert_loaded_cleanly(state, page, "broken")
        assert any("NegGuideNoSuchNode" in d for d in state["dialogs"]), state["dialogs"]
    finally:
        page.keyboard.press("Escape")


FRAMES_JS = """async () => {
  const { api } = await import("/scripts/api.js");
  window.negguideFrames = [];
  api.addEventListener("negguide.dng", ({ detail }) => window.negguideFrames.push(detail.p.length));
}"""


def test_dng_curve_is_drawn_live_on_the_node(server, page, tmp_path):
    """Queued from the browser, the DNG guider node receives p and lambda after every step and draws them while the
    sampler still runs: at least two different frames in one run, the last one per step of the schedule."""
    workflow = json.loads((ROOT / "example_workflows" / "DNG dynamic negative with plot.json").read_text())
    load(page, workflow)
    types = {n["type"]: n["id"] for n in workflow["nodes"]}
    set_widgets(page, types["EmptyLatentImage"], {"width": 64, "height": 64, "batch_size": 2})
    set_widgets(page, types["BasicScheduler"], {"steps": 4})
    page.evaluate(FRAMES_JS)
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    page.wait_for_function("() => (window.negguideFrames ?? []).length >= 4", timeout=RUN_TIMEOUT * 1000)
    frames = page.evaluate("() => window.negguideFrames")
    assert len(set(frames)) >= 2 and frames == sorted(frames), frames  # the curve grows step by step
    guider = types["NegGuideDNGGuider"]
    drawn = page.evaluate("(id) => { const n = app.graph.getNodeById(id); "
                          "return [n.negguideDngFrames, n.negguideDng.p.length, n.negguideDng.p[0].length]; }", guider)
    assert drawn[0] >= 2 and drawn[1] >= 2 and drawn[2] == 2, drawn  # two images, one curve each
    page.screenshot(path=str(tmp_path / "dng_live.png"))
    assert not page.errors, page.errors
