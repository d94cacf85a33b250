"""A real ComfyUI server in a subprocess, shared by the HTTP and frontend tests, and a browser on its frontend.

Fixture `comfy_server` (session): ComfyUI's own main.py on 127.0.0.1 (a free port), --cpu, a temp
--base-directory with custom_nodes/negguide (a symlink to this repo) and tiny random models under the names the
shipped workflows use (SD1.5 checkpoint "v1-5-pruned-emaonly.safetensors", BLIP captioner, BERT), plus the
test-only loader nodes of tiny_loader_nodes.py that stand in for the family templates' loaders. Its log goes
to a file; fixture `server` (per test) prints the part of it a failing test produced. Test modules import both
fixtures (pytest finds them by their fixture names):
    from _server import comfy_server_fixture, server_fixture  # noqa: F401
frontend(server): headless system Chromium (playwright) on the real frontend, nothing but 127.0.0.1 reachable.
The launcher and the browser are scripts/comfy_frontend.py (the dev scripts' own; scripts never import tests).
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from hostlib import HOST, ROOT, STUBS


def _load_by_path(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The server launcher and browser of the dev scripts (scripts/ never imports the tests; the tests reuse it).
cf = _load_by_path("negguide_comfy_frontend", ROOT / "scripts" / "comfy_frontend.py")
HERE = pathlib.Path(__file__).parent
PACK_DIR = cf.PACK_DIR
CKPT = "v1-5-pruned-emaonly.safetensors"  # the name shipped workflows use
TINY = "negguide_tiny_sd15.safetensors"
RUN_TIMEOUT = 120  # seconds to wait for one prompt in /history
CHROMIUM = cf.CHROMIUM


# Start of every child that imports ComfyUI: ComfyUI (never this repo's root) on the path, and where torchvision
# is only our stub, transformers told the truth (it caches what it finds at import, and with the stub importable
# it would take it for torchvision and every HF node would fail), as in the in-process host tier.
PRELUDE = """import sys
sys.path[:0] = [{host!r}, {here!r}, {lab!r}]
import transformers.utils.import_utils
if {stub!r}:
    sys.path.append({stubs!r})
import _tiny_hf
_tiny_hf.hide_torchvision_stub()
"""


def _prelude() -> str:
    return PRELUDE.format(host=str(HOST), here=str(HERE), lab=str(STUBS.parent), stub=_needs_stubs(), stubs=str(STUBS))


class ComfyServer:
    def __init__(self, base: pathlib.Path):
        self.base = base
        self.log_path = base / "server.log"
        self.port = cf.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.proc = cf.start(self.base, self.port, self.log_path, prelude=_prelude())
        self.object_info = self.get("/object_info")
        return self

    def stop(self):
        cf.stop(self.proc)

    def log(self, tail: int = 20000) -> str:
        return cf.tail(self.log_path, tail)

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


def _needs_stubs() -> bool:
    """No real torchvision (absent, or only our stand-in, which the in-process tier may have put on sys.path)."""
    spec = importlib.util.find_spec("torchvision")
    return spec is None or not spec.origin or pathlib.Path(spec.origin).is_relative_to(STUBS)


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


def frontend(server: ComfyServer, viewport=(1600, 1000), pixel_ratio=1):
    """Headless Chromium on the server's real frontend (scripts/comfy_frontend.py): yields (page, errors)."""
    return cf.frontend(server.url, viewport, pixel_ratio)


def launch(base: pathlib.Path) -> ComfyServer:
    """Lays out a base directory (pack symlink, tiny models, first-run settings) and starts a server on it."""
    cf.layout(base)
    (base / "custom_nodes" / "negguide_test_tiny_loaders.py").symlink_to(HERE / "tiny_loader_nodes.py")
    _build_models(base / "models")
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

