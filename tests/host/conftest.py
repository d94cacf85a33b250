"""Host tier: a real ComfyUI, in-process, with NegGuide loaded as a custom node.

The host is COMFYUI_PATH, else ~/ComfyUI. When it (or its Python requirements) is missing, every test in
tests/host is skipped with a message that says exactly what is missing.

Fixture `host` (session) gives:
  host.execute(graph, outputs=(), executor=None) -> {node_id: [output values]}
      runs an API-format graph through ComfyUI's validate_prompt + PromptExecutor; raises HostError with
      ComfyUI's own message on a validation or execution error.
  host.new_executor()  a fresh PromptExecutor (its own cache); host.executor is the shared one
  host.ckpt            name of the tiny random SD1.5 checkpoint in the "checkpoints" folder
  host.ckpt_path       its path;  host.tmp: a session temp dir (also ComfyUI's input/output/temp dirs)
  host.add_model_dir(folder_name, path)  registers a models folder (e.g. "LLM") for this session
  host.pack            the NegGuide module as ComfyUI loaded it; host.nodes: ComfyUI's nodes module
Graph helpers: hostlib.tiny_graph() builds the usual loader/encode/latent nodes.
"""
import asyncio
import importlib
import pathlib
import types
import uuid

import pytest

from hostlib import HOST, HostError, Server, boot
HOST_REQUIREMENTS = ("torch", "safetensors", "transformers", "aiohttp", "yaml", "PIL", "scipy", "einops",
                     "torchsde", "alembic", "sqlalchemy", "av", "pydantic_settings", "comfyui_frontend_package")


def host_missing() -> str | None:
    if not (HOST / "comfy" / "samplers.py").is_file():
        return (f"host tier skipped: no ComfyUI checkout at {HOST} (comfy/samplers.py not found). "
                "Put ComfyUI 0.3.64 there or set COMFYUI_PATH.")
    missing = [m for m in HOST_REQUIREMENTS if importlib.util.find_spec(m) is None]
    if missing:
        return (f"host tier skipped: ComfyUI at {HOST} found but Python packages are missing: {', '.join(missing)}. "
                f"Run: pip install -r {HOST}/requirements.txt (torch==2.13.0 first).")
    return None


MISSING = host_missing()


def pytest_collection_modifyitems(config, items):
    if MISSING:
        mark = pytest.mark.skip(reason=MISSING)
        for item in items:
            if pathlib.Path(str(item.fspath)).is_relative_to(pathlib.Path(__file__).parent):
                item.add_marker(mark)


def pytest_terminal_summary(terminalreporter):
    if MISSING:
        terminalreporter.write_sep("!", MISSING, red=True)


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    if MISSING:
        pytest.skip(MISSING)
    tmp = tmp_path_factory.mktemp("comfy")
    nodes, execution, pack = boot(tmp)
    import folder_paths

    from tiny_sd15 import build
    ckpt_dir = tmp / "checkpoints"
    ckpt_dir.mkdir()
    ckpt_path = build(ckpt_dir / "negguide_tiny_sd15.safetensors")
    folder_paths.add_model_folder_path("checkpoints", str(ckpt_dir), is_default=True)

    def new_executor():
        return execution.PromptExecutor(Server(), cache_type=execution.CacheType.CLASSIC)

    shared = new_executor()

    def execute(graph, outputs=(), executor=None):
        ex = executor or shared
        prompt_id = str(uuid.uuid4())
        graph = dict(graph)
        for nid in outputs:
            if not getattr(nodes.NODE_CLASS_MAPPINGS[graph[str(nid)]["class_type"]], "OUTPUT_NODE", False):
                graph[f"sink_{nid}"] = {"class_type": "NegGuideTestSink", "inputs": {"value": [str(nid), 0]}}
        ok, error, good_outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, graph, None))
        if not ok:
            details = "; ".join(f"{nid}: {e['errors']}" for nid, e in node_errors.items())
            raise HostError(f"validation failed: {error.get('message')} {error.get('details', '')} {details}")
        ex.execute(graph, prompt_id, {}, good_outputs)
        if not ex.success:
            errors = [d for ev, d in ex.status_messages if ev == "execution_error"]
            msg = errors[0].get("exception_message", errors[0]) if errors else ex.status_messages
            raise HostError(f"execution failed: {msg}")
        result = {}
        for nid in outputs:
            cached = ex.caches.outputs.get(str(nid))
            if cached is None:
                raise HostError(f"node {nid} produced no output")
            result[str(nid)] = [v[0] if len(v) == 1 else v for v in cached]
        return result

    def add_model_dir(folder_name, path):
        if folder_name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[folder_name] = ([], set())
        folder_paths.add_model_folder_path(folder_name, str(path), is_default=True)

    return types.SimpleNamespace(execute=execute, new_executor=new_executor, executor=shared,
                                 ckpt=ckpt_path.name, ckpt_path=ckpt_path, tmp=tmp, pack=pack,
                                 nodes=nodes, execution=execution, add_model_dir=add_model_dir,
                                 HostError=HostError)
