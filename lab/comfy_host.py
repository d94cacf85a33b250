"""A real ComfyUI imported in-process with NegGuide loaded, for the host tests and the scripts (benchmark, labs).

ComfyUI comes from $COMFYUI_PATH, else ~/ComfyUI. Only the ComfyUI folder goes on sys.path, never this repo's root
(its nodes/ would shadow ComfyUI's nodes.py). Import this file with lab/ on sys.path (it has no package imports).
"""
import asyncio
import importlib.util
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOST = pathlib.Path(os.environ.get("COMFYUI_PATH") or pathlib.Path.home() / "ComfyUI").expanduser()
STUBS = pathlib.Path(__file__).parent / "stubs"  # a stand-in torchvision: there is no CPU build for this torch


class HostError(RuntimeError):
    pass


def import_comfy():
    """Put ComfyUI (and, where torchvision is missing, the stand-in) on sys.path; CPU unless NEGGUIDE_DEVICE says."""
    if not (HOST / "comfy" / "samplers.py").is_file():
        raise HostError(f"no ComfyUI checkout at {HOST}: put ComfyUI there or set COMFYUI_PATH")
    if str(HOST) not in sys.path:
        sys.path.insert(0, str(HOST))
    if importlib.util.find_spec("torchvision") is None:
        sys.path.append(str(STUBS))
    from comfy.cli_args import args
    args.cpu = os.environ.get("NEGGUIDE_DEVICE", "cpu") == "cpu"
    args.disable_all_custom_nodes = False


def boot(tmp: pathlib.Path, extra_nodes: dict | None = None):
    """Import ComfyUI, point its dirs at tmp, load core extras, extra_nodes and the pack: (nodes, execution, pack)."""
    import_comfy()
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
    nodes.NODE_CLASS_MAPPINGS.update(extra_nodes or {})
    if not asyncio.run(nodes.load_custom_node(str(ROOT))):
        raise HostError(f"ComfyUI refused to load the pack from {ROOT}; see the log above")
    pack = sys.modules[str(ROOT).replace(".", "_x_")]
    return nodes, execution, pack
