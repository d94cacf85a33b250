"""A real ComfyUI server in a subprocess, shared by the HTTP and frontend tests, and a browser on its frontend.

Fixture `comfy_server` (session): ComfyUI's own main.py on 127.0.0.1 (a free port), --cpu, a temp
--base-directory with custom_nodes/negguide (a symlink to this repo) and tiny random models under the names the
shipped workflows use (SD1.5 checkpoint "v1-5-pruned-emaonly.safetensors", BLIP captioner, BERT). Its log goes
to a file; fixture `server` (per test) prints the part of it a failing test produced. Test modules import both
fixtures (pytest finds them by their fixture names):
    from _server import comfy_server_fixture, server_fixture  # noqa: F401
frontend(server): headless system Chromium (playwright) on the real frontend, nothing but 127.0.0.1 reachable.
"""
import contextlib
import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from hostlib import HOST, ROOT

STUBS = pathlib.Path(__file__).parent / "stubs"
PACK_DIR = "negguide"
CKPT = "v1-5-pruned-emaonly.safetensors"  # the name shipped workflows use
TINY = "negguide_tiny_sd15.safetensors"
START_TIMEOUT = 180  # seconds to wait for /object_info (2 slow CPU cores, import of torch + all core nodes)
RUN_TIMEOUT = 120  # seconds to wait for one prompt in /history
# A first-time user gets a template browser and the minimap; the tests (and the screenshot) want neither.
FRONTEND_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
CHROMIUM = os.environ.get("NEGGUIDE_CHROMIUM", "/usr/bin/chromium")  # the system's; never a downloaded one
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


# Start of every child that imports ComfyUI: ComfyUI (never this repo's root) on the path, and where torchvision
# is only our stub, transformers told the truth (it caches what it finds at import, and with the stub importable
# it would take it for torchvision and every HF node would fail), as in the in-process host tier.
PRELUDE = """import sys
sys.path[:0] = [{host!r}, {here!r}]
import transformers.utils.import_utils
if {stub!r}:
    sys.path.append({stubs!r})
import _tiny_hf
_tiny_hf.hide_torchvision_stub()
"""


def _prelude() -> str:
    return PRELUDE.format(host=str(HOST), here=str(STUBS.parent), stub=_needs_stubs(), stubs=str(STUBS))


class ComfyServer:
    def __init__(self, base: pathlib.Path):
        self.base = base
        self.log_path = base / "server.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
        main = str(HOST / "main.py")
        launcher = _prelude() + f"sys.argv[0] = {main!r}\nimport runpy\nrunpy.run_path({main!r}, run_name='__main__')\n"
        cpu = ["--cpu"] if os.environ.get("NEGGUIDE_DEVICE", "cpu") == "cpu" else []  # same switch as hostlib.boot
        cmd = [sys.executable, "-c", launcher, *cpu, "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), "--disable-auto-launch",
               "--database-url", f"sqlite:///{self.base / 'comfyui.db'}",  # never the checkout's user/comfyui.db
               "--preview-method", "none"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.base, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during start-up:\n{self.log()}")
            try:
                self.object_info = self.get("/object_info")
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer /object_info within {START_TIMEOUT} s:\n{self.log()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self, tail: int = 20000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no server log)"

    def request(self, path, data=None, timeout=30):
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.url + path, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (only ever 127.0.0.1)
            return r.read()

    def get(self, path):
        return json.loads(self.request(path))

    def queue(self, prompt: dict) -> str:
        """POSTs an API-format graph; returns its prompt id. A validation error fails with ComfyUI's message."""
        try:
            return json.loads(self.request("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex}))["prompt_id"]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"/prompt refused the graph: {e.read().decode(errors='replace')}") from e

    def wait(self, prompt_id: str, timeout=RUN_TIMEOUT) -> dict:
        """Polls /history until the prompt is done; fails with ComfyUI's error when it did not succeed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") != "success":
                    errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                    raise AssertionError(f"prompt {prompt_id} failed: {errors or status}")
                return entry
            time.sleep(0.25)
        raise AssertionError(f"prompt {prompt_id} not done after {timeout} s")

    def run(self, prompt: dict) -> dict:
        return self.wait(self.queue(prompt))

    def images(self, entry: dict) -> list[pathlib.Path]:
        """Paths of the images a /history entry lists (SaveImage outputs)."""
        paths = []
        for out in entry.get("outputs", {}).values():
            for img in out.get("images", []):
                folder = self.base / img.get("type", "output") / img.get("subfolder", "")
                paths.append(folder / img["filename"])
        return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _needs_stubs() -> bool:
    """No real torchvision (absent, or only our stand-in, which the in-process tier may have put on sys.path)."""
    spec = importlib.util.find_spec("torchvision")
    return spec is None or not spec.origin or pathlib.Path(spec.origin).is_relative_to(STUBS)


def _load_by_path(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_models(models: pathlib.Path):
    """The models the shipped workflows name, tiny and random: the SD1.5 checkpoint (also as CKPT), a BLIP
    captioner in LLM/ and a BERT masked LM in bert/. Runs in a child: it imports comfy."""
    from comfy.cli_args import args
    args.cpu = True
    import _tiny_hf
    from tiny_sd15 import build

    build(models / "checkpoints" / TINY)
    (models / "checkpoints" / CKPT).symlink_to(models / "checkpoints" / TINY)
    _tiny_hf.blip(models / "LLM" / "blip-image-captioning-large")
    _load_by_path("negguide_tests_root", ROOT / "tests" / "conftest.py")  # registers the pack as `negguide`
    bert = _load_by_path("negguide_test_debias_bert", ROOT / "tests" / "core" / "test_debias_bert.py")
    bert.build_tiny_bert(models / "bert" / "bert-base-uncased")


def _build_models(models: pathlib.Path):
    code = _prelude() + f"import _server\n_server.build_models(_server.pathlib.Path({str(models)!r}))\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=HOST, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"building the tiny models failed:\n{done.stdout}\n{done.stderr}")


def browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "frontend test skipped: the Python package playwright is not installed (pip install playwright)."
    if not os.access(CHROMIUM, os.X_OK):
        return (f"frontend test skipped: no Chromium at {CHROMIUM} (apt-get install chromium, or set NEGGUIDE_CHROMIUM "
                "to a Chromium binary).")
    return None


@contextlib.contextmanager
def frontend(server: ComfyServer, viewport=(1600, 1000), pixel_ratio=1):
    """Headless Chromium on the server's real frontend, once the app is ready and our nodes are registered.

    Yields (page, errors): errors collects uncaught page errors and console errors from then on (the
    frontend's own start-up noise is dropped). Every request that is not for this server is aborted.
    """
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=pixel_ratio)
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server.url + "/") else r.abort())
            page.route("**/api/object_info", _object_info_for_frontend)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            # A failed resource load is the server's 404 for optional files (user.css) or an aborted outside URL.
            page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                    and errors.append(f"console error: {m.text}"))
            page.goto(server.url)
            page.wait_for_function("() => window.app?.vueAppReady && !!window.LiteGraph?.registered_node_types"
                                   "?.NegGuideAddNegative", timeout=60_000)
            errors.clear()
            yield page, errors
        finally:
            browser.close()


# Frontend 1.27.10 builds every model combo widget (ckpt_name, ...) through a lookup that throws when any of
# these default model-loader nodes is absent from /object_info, so CheckpointLoaderSimple cannot even be created.
# Where torchvision is missing, core's UpscaleModelLoader fails to import; the browser then gets a placeholder
# definition for each absent one (never used by our workflows; the server is not touched).
FRONTEND_MODEL_LOADERS = ("CheckpointLoaderSimple", "ImageOnlyCheckpointLoader", "LoraLoader", "LoraLoaderModelOnly",
                          "VAELoader", "ControlNetLoader", "UNETLoader", "UpscaleModelLoader", "StyleModelLoader",
                          "GLIGENLoader")


def _object_info_for_frontend(route):
    response = route.fetch()
    info = response.json()
    for name in FRONTEND_MODEL_LOADERS:
        info.setdefault(name, {"input": {"required": {}}, "output": [], "output_is_list": [], "output_name": [],
                               "name": name, "display_name": f"{name} (absent: placeholder)", "description": "",
                               "category": "_negguide_tests", "output_node": False, "python_module": "nodes"})
    route.fulfill(response=response, json=info)


def launch(base: pathlib.Path) -> ComfyServer:
    """Lays out a base directory (pack symlink, tiny models, first-run settings) and starts a server on it."""
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_DIR).symlink_to(ROOT, target_is_directory=True)
    _build_models(base / "models")
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(FRONTEND_SETTINGS))
    server = ComfyServer(base)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


_SHARED = {}


@pytest.fixture(scope="session", name="comfy_server")
def comfy_server_fixture(tmp_path_factory):
    """One server per session even when several test modules import this fixture. (Where ComfyUI is missing,
    tests/host/conftest.py has already marked every test here skipped.)"""
    if "error" in _SHARED:  # a server that failed to start is not retried by every test
        raise _SHARED["error"]
    if "server" not in _SHARED:
        try:
            _SHARED["server"] = launch(tmp_path_factory.mktemp("comfy_server"))
        except Exception as e:
            _SHARED["error"] = e
            raise
    yield _SHARED["server"]
    _SHARED["server"].stop()  # at session end; idempotent, as each importing module holds its own copy


@pytest.fixture(name="server")
def server_fixture(comfy_server, request):
    """The shared server; when the test fails, its log since the test started is printed with the failure."""
    start = comfy_server.log_path.stat().st_size if comfy_server.log_path.exists() else 0
    failed = request.session.testsfailed
    yield comfy_server
    if request.session.testsfailed > failed:
        log = comfy_server.log_path.read_bytes()[start:].decode(errors="replace")[-20000:]
        print(f"---- ComfyUI server log during {request.node.name} ----\n{log or '(empty)'}")  # shown with the failure

