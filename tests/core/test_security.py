"""Security rules of the pack, checked so that breaking one fails CI:

- no eval/exec anywhere in the pack's code, and no code path that passes trust_remote_code anything but False
  (a static scan of every .py outside tests/ and dot-folders; scanner_catches_* prove the scan can fail);
- ruff's S102 (exec), S307 (eval) and E702 (statements joined by ';') are clean;
- at run time the Hugging Face loaders open no socket and ask transformers for local files and no remote code.
The host tier repeats the socket trap around whole graphs (tests/host/test_bad_inputs.py, test_captioner.py).
"""
import ast
import importlib.util
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from negguide.support import hf

ROOT = pathlib.Path(__file__).resolve().parents[2]
BANNED_CALLS = {"eval", "exec"}
REMOTE = "trust_remote_code"


def _is_false(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def violations(source: str, where: str = "<string>") -> list[str]:
    """Every eval/exec call and every trust_remote_code set to anything but the literal False in this source."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        bad = None
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) and \
                isinstance(fn.value, ast.Name) and fn.value.id == "builtins" else None
            if name in BANNED_CALLS:
                bad = f"{name}() call"
            bad = bad or next((f"{REMOTE}={ast.unparse(k.value)}" for k in node.keywords
                               if k.arg == REMOTE and not _is_false(k.value)), None)
        elif isinstance(node, ast.Dict):
            bad = next((f"{{{REMOTE!r}: {ast.unparse(v)}}}" for k, v in zip(node.keys, node.values)
                        if isinstance(k, ast.Constant) and k.value == REMOTE and not _is_false(v)), None)
        elif isinstance(node, ast.Assign):
            bad = next((f"{ast.unparse(t)} = {ast.unparse(node.value)}" for t in node.targets
                        if REMOTE in ast.unparse(t) and not _is_false(node.value)), None)
        if bad:
            found.append(f"{where}:{node.lineno}: {bad}")
    return found


def pack_files() -> list[pathlib.Path]:
    """The pack's own Python: everything but the tests and dot-folders (.ci, .tf-versions, .git, ...)."""
    return sorted(p for p in ROOT.rglob("*.py")
                  if not any(part.startswith(".") or part == "tests" for part in p.relative_to(ROOT).parts))


@pytest.mark.parametrize("source", [
    "eval('1 + 1')",
    "exec('x = 1')",
    "import builtins\nbuiltins.exec('x = 1')",
    "M.from_pretrained(path, trust_remote_code=True)",
    "M.from_pretrained(path, trust_remote_code=flag)",
    "M.from_pretrained(path, **{'trust_remote_code': 1})",
    "OPTIONS = dict(local_files_only=True, trust_remote_code=True)",
    "opts['trust_remote_code'] = True",
])
def test_scanner_catches_each_violation(source, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(source + "\n")
    assert violations(bad.read_text(), str(bad)), source


def test_scanner_allows_what_the_pack_does():
    assert violations("HF = {'local_files_only': True, 'trust_remote_code': False}\n"
                      "model.eval()\nre.compile('x')\nM.from_pretrained(p, trust_remote_code=False)\n") == []


def test_no_eval_exec_or_remote_code_in_the_pack():
    files = pack_files()
    assert ROOT / "support" / "hf.py" in files and ROOT / "nodes" / "dng.py" in files  # the scan sees the pack
    found = [v for f in files for v in violations(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert found == [], "\n".join(found)


def test_loader_options_are_local_and_without_remote_code():
    assert hf.HF_OPTIONS == {"local_files_only": True, "trust_remote_code": False}


def test_ruff_security_rules_are_clean():
    if importlib.util.find_spec("ruff") is None and shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install ruff); .ci/run runs the same check")
    cmd = [sys.executable, "-m", "ruff"] if importlib.util.find_spec("ruff") else ["ruff"]
    done = subprocess.run([*cmd, "check", "--select", "S102,S307,E702", "--no-cache", str(ROOT)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _load_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchvision_is_the_stand_in() -> bool:
    spec = importlib.util.find_spec("torchvision")
    return bool(spec and spec.origin) and pathlib.Path(spec.origin).is_relative_to(ROOT / "lab" / "stubs")


TINY = _load_by_path("negguide_tiny_hf", ROOT / "tests" / "host" / "_tiny_hf.py")  # tiny captioner folders


@pytest.fixture
def no_network(monkeypatch):
    """Every way to open a connection raises and is recorded; yields the list of attempts."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access at run time")
    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                        (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refuse)
    with pytest.raises(OSError, match="network access"):  # the trap works
        socket.create_connection(("huggingface.co", 443))
    attempts.clear()
    return attempts


@pytest.fixture
def pretrained_calls(monkeypatch):
    """The keyword arguments of every from_pretrained call on the classes the pack loads with."""
    transformers = pytest.importorskip("transformers")
    TINY.hide_torchvision_stub()  # the host tier's torchvision stand-in, where a host test ran first in this process
    if transformers.utils.import_utils.is_torchvision_available() and torchvision_is_the_stand_in():
        pytest.skip("a host test already made transformers take the tests' torchvision stand-in for real in this process; "
                    "run tests/core first (python -m pytest tests does)")
    calls = []

    def spy(cls):
        real = cls.from_pretrained

        def from_pretrained(*args, **kwargs):
            calls.append((cls.__name__, kwargs))
            return real(*args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", from_pretrained)
    for cls in (transformers.AutoTokenizer, transformers.AutoProcessor, transformers.AutoModelForMaskedLM,
                hf.image_to_text_auto()[0]):
        spy(cls)
    return calls


def test_hf_loaders_run_offline_without_remote_code(tmp_path, no_network, pretrained_calls):
    bert = _load_by_path("negguide_tiny_bert", ROOT / "tests" / "core" / "test_debias_bert.py")
    bert.build_tiny_bert(tmp_path / "bert")
    captioner = TINY.blip(tmp_path / "blip")
    pretrained_calls.clear()  # building the folders is the test's own doing; loading them is the pack's

    tokenizer, model = hf.load_masked_lm(str(tmp_path / "bert"))
    processor, blip = hf.load(captioner, torch.float32)
    captions = hf.caption(blip, processor, hf.to_pil(torch.rand(2, 32, 32, 3)), "", 5, "cpu")
    assert model is not None and tokenizer is not None and len(captions) == 2
    assert no_network == []
    loaders = {"AutoTokenizer", "AutoProcessor", "AutoModelForMaskedLM", hf.image_to_text_auto()[0].__name__}
    assert {name for name, _ in pretrained_calls} == loaders, pretrained_calls  # (the processor loads a tokenizer too)
    for name, kwargs in pretrained_calls:
        assert kwargs.get("trust_remote_code") is False and kwargs.get("local_files_only") is True, (name, kwargs)
