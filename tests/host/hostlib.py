"""Booting a real ComfyUI in-process with NegGuide loaded, shared by the host tests and scripts/benchmark.py.

Only the ComfyUI folder goes on sys.path, never this repo's root (its nodes/ would shadow ComfyUI's nodes.py).
"""
import asyncio
import importlib.util
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOST = pathlib.Path(os.environ.get("COMFYUI_PATH") or pathlib.Path.home() / "ComfyUI").expanduser()


class HostError(RuntimeError):
    pass


class _AnyType(str):
    def __ne__(self, other):  # ComfyUI's validator accepts a type that equals every other type
        return False


class _Sink:
    """Test-only output node: ComfyUI runs only graphs that end in an output node, so execute() hangs one
    of these on every node whose outputs a test asks for."""
    CATEGORY = "_negguide_tests"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (_AnyType("*"),)}}

    def run(self, value):
        return {}


class Server:
    """What PromptExecutor needs from PromptServer when no server runs: a sink for its messages."""
    client_id = None
    last_node_id = None
    last_prompt_id = None

    def __init__(self):
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))


def boot(tmp: pathlib.Path):
    """Import ComfyUI (CPU unless told otherwise), point its dirs at tmp, load core extras and the pack."""
    sys.path.insert(0, str(HOST))  # ComfyUI only: the repo root never goes on sys.path
    if importlib.util.find_spec("torchvision") is None:
        sys.path.append(str(pathlib.Path(__file__).parent / "stubs"))
    from comfy.cli_args import args
    args.cpu = os.environ.get("NEGGUIDE_DEVICE", "cpu") == "cpu"
    args.disable_all_custom_nodes = False
    import folder_paths
    for sub in ("input", "output", "temp", "user"):
        (tmp / sub).mkdir(exist_ok=True)
    folder_paths.set_input_directory(str(tmp / "input"))
    folder_paths.set_output_directory(str(tmp / "output"))
    folder_paths.set_temp_directory(str(tmp / "temp"))
    folder_paths.set_user_directory(str(tmp / "user"))
    import execution
    import nodes
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    nodes.NODE_CLASS_MAPPINGS["NegGuideTestSink"] = _Sink
    if not asyncio.run(nodes.load_custom_node(str(ROOT))):
        raise HostError(f"ComfyUI refused to load the pack from {ROOT}; see the log above")
    pack = sys.modules[str(ROOT).replace(".", "_x_")]
    return nodes, execution, pack


def tiny_graph(ckpt, prompt="a photo of a cat", negative="blurry", width=64, height=64, batch=1):
    """The usual loader / text encode / empty latent nodes, with ids "ckpt", "pos", "neg", "empty", "latent"."""
    enc = lambda text: {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["ckpt", 1]}}
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "pos": enc(prompt), "neg": enc(negative), "empty": enc(""),
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
    }
