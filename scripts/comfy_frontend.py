"""Dev helper for the workflow scripts (the browser tests reuse it): ComfyUI's own main.py as a subprocess on
127.0.0.1 with this pack linked into a temp base directory, and headless system Chromium on its real frontend.

    with comfyui() as url, frontend(url) as (page, errors): ...

Needs a ComfyUI checkout ($COMFYUI_PATH, else ~/ComfyUI), playwright and a Chromium ($NEGGUIDE_CHROMIUM, else
/usr/bin/chromium; never a downloaded one). Nothing but 127.0.0.1 is reachable from the browser.
"""
import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMFYUI = pathlib.Path(os.environ.get("COMFYUI_PATH") or pathlib.Path.home() / "ComfyUI").expanduser()
PACK_DIR = "negguide"  # the custom_nodes folder name: the frontend's /extensions/<it>/ and template category
CHROMIUM = os.environ.get("NEGGUIDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 180  # seconds for /object_info to answer (importing torch and every core node on a slow CPU)
# A first-time user gets a template browser and the minimap; scripts and tests want neither.
FRONTEND_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
# Frontend 1.27.10 builds every model combo widget through a lookup that throws when one of these default
# model loaders is missing from /object_info (core's UpscaleModelLoader is, where torchvision is not
# installed); the browser then gets a placeholder definition for each absent one (the server is untouched).
FRONTEND_MODEL_LOADERS = ("CheckpointLoaderSimple", "ImageOnlyCheckpointLoader", "LoraLoader", "LoraLoaderModelOnly",
                          "VAELoader", "ControlNetLoader", "UNETLoader", "UpscaleModelLoader", "StyleModelLoader",
                          "GLIGENLoader")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def layout(base: pathlib.Path):
    """A ComfyUI base directory: this pack linked into custom_nodes/, first-run settings, empty model folders."""
    (base / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes").mkdir(exist_ok=True)
    (base / "custom_nodes" / PACK_DIR).symlink_to(ROOT, target_is_directory=True)
    (base / "user" / "default").mkdir(parents=True, exist_ok=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(FRONTEND_SETTINGS))


def start(base: pathlib.Path, port: int, log_path: pathlib.Path, prelude: str = "", env: dict | None = None):
    """Starts main.py on base (prelude: Python run first in the child); returns the process once /object_info
    answers. Raises with the log's tail when it exits or does not answer in time."""
    main = str(COMFYUI / "main.py")
    launcher = prelude + f"import sys, runpy\nsys.argv[0] = {main!r}\nrunpy.run_path({main!r}, run_name='__main__')\n"
    cpu = ["--cpu"] if os.environ.get("NEGGUIDE_DEVICE", "cpu") == "cpu" else []
    cmd = [sys.executable, "-c", launcher, *cpu, "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-auto-launch",
           "--database-url", f"sqlite:///{base / 'comfyui.db'}",  # never the checkout's user/comfyui.db
           "--preview-method", "none"]
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {proc.returncode} during start-up:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=30):  # noqa: S310 (127.0.0.1 only)
                return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"ComfyUI did not answer /object_info within {START_TIMEOUT} s:\n{tail(log_path)}")


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: pathlib.Path, size: int = 20000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no server log)"


# main.py run from a string sees the working directory, not its own folder, as sys.path[0]: put ComfyUI there,
# and lab/'s torchvision stand-in where no torchvision is installed (ComfyUI imports it at start-up).
PATHS = (f"import importlib.util, sys\nsys.path.insert(0, {str(COMFYUI)!r})\n"
         f"if importlib.util.find_spec('torchvision') is None: sys.path.append({str(ROOT / 'lab' / 'stubs')!r})\n")


@contextlib.contextmanager
def comfyui(url: str | None = None):
    """Yields the URL of a ComfyUI with this pack: `url` as given, else a fresh one in a temp base directory."""
    if url:
        yield url.rstrip("/")
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp)
        layout(base)
        port = free_port()
        proc = start(base, port, base / "server.log", prelude=PATHS)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)


def _object_info_for_frontend(route):
    response = route.fetch()
    info = response.json()
    for name in FRONTEND_MODEL_LOADERS:
        info.setdefault(name, {"input": {"required": {}}, "output": [], "output_is_list": [], "output_name": [],
                               "name": name, "display_name": f"{name} (absent: placeholder)", "description": "",
                               "category": "_negguide_placeholder", "output_node": False, "python_module": "nodes"})
    route.fulfill(response=response, json=info)


@contextlib.contextmanager
def frontend(url: str, viewport=(1600, 1000), pixel_ratio=1):
    """Headless Chromium on the real frontend at url, once the app is ready and our nodes are registered.

    Yields (page, errors): errors collects uncaught page errors and console errors from then on (the
    frontend's own start-up noise is dropped). Every request that is not for this server is aborted.
    """
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=pixel_ratio)
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(url + "/") else r.abort())
            page.route("**/api/object_info", _object_info_for_frontend)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            # A failed resource load is the server's 404 for optional files (user.css) or an aborted outside URL.
            page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                    and errors.append(f"console error: {m.text}"))
            page.goto(url)
            page.wait_for_function("() => window.app?.vueAppReady && !!window.LiteGraph?.registered_node_types"
                                   "?.NegGuideAddNegative", timeout=60_000)
            errors.clear()
            yield page, errors
        finally:
            browser.close()


# The part of the canvas no menu or side bar covers, in CSS pixels of the page.
VISIBLE_CANVAS_JS = """() => {
  const r = app.canvas.canvas.getBoundingClientRect();
  const bar = document.querySelector(".side-tool-bar-container")?.getBoundingClientRect();
  const menu = document.querySelector(".comfyui-body-top")?.getBoundingClientRect();
  const x = Math.max(r.left, bar?.right ?? r.left), y = Math.max(r.top, menu?.bottom ?? r.top);
  return {x, y, width: r.right - x, height: r.bottom - y};
}"""

# Sets the saved view (extra.ds) so the whole graph fits that visible part, at most at 100 %.
FIT_JS = """() => {
  const visible = (%s)(), r = app.canvas.canvas.getBoundingClientRect(), graph = app.graph;
  const title = LiteGraph.NODE_TITLE_HEIGHT, margin = 30;
  const x0 = Math.min(...graph.nodes.map((n) => n.pos[0])) - margin;
  const y0 = Math.min(...graph.nodes.map((n) => n.pos[1] - title)) - margin;
  const x1 = Math.max(...graph.nodes.map((n) => n.pos[0] + n.size[0])) + margin;
  const y1 = Math.max(...graph.nodes.map((n) => n.pos[1] + n.size[1])) + margin;
  const scale = Math.min(1, visible.width / (x1 - x0), visible.height / (y1 - y0));
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [(visible.x - r.left) / scale - x0, (visible.y - r.top) / scale - y0];
  app.canvas.setDirty(true, true);
}""" % VISIBLE_CANVAS_JS

# Builds a graph from a spec in the page and returns what the frontend serialises, view fitted to the canvas.
# spec: {nodes: [[key, type, [x, y], {widget: value}, title, [w, h] | null]], links: [[from, output, to, input]]};
# an output is its index or its type, an input its name.
BUILD_JS = """(spec) => {
  const fitView = %s;
  const graph = app.graph;
  graph.clear();
  const made = {};
  for (const [key, type, pos, widgets, title, size] of spec.nodes) {
    const node = LiteGraph.createNode(type);
    if (!node) throw new Error(`unknown node type ${type}`);
    if (title) node.title = title;
    node.pos = pos;
    graph.add(node);
    for (const [name, value] of Object.entries(widgets)) {
      const widget = node.widgets?.find((w) => w.name === name);
      if (!widget) throw new Error(`${type} has no widget ${name}`);
      widget.value = value;
    }
    if (size) node.setSize(size);
    made[key] = node;
  }
  for (const [src, out, dst, input] of spec.links) {
    const a = made[src], b = made[dst];
    const o = typeof out === "number" ? out : a.outputs.findIndex((s) => s.type === out);
    const i = b.findInputSlot(input);
    if (o < 0 || i < 0 || !a.connect(o, b, i)) throw new Error(`cannot link ${src}.${out} -> ${dst}.${input}`);
  }
  fitView();
  return JSON.parse(JSON.stringify(graph.serialize()));
}""" % FIT_JS


def build(page, nodes: dict, links: list) -> dict:
    """nodes: key -> (type, [x, y], widget values by name, title[, size]); see BUILD_JS."""
    spec = {"nodes": [[key, *value, *([None] * (5 - len(value)))] for key, value in nodes.items()], "links": links}
    return page.evaluate(BUILD_JS, spec)
