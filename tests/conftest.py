"""Shared test setup: load the pack the way ComfyUI does (a package from its folder's __init__.py).

The repo root is never put on sys.path: its nodes/ folder would shadow ComfyUI's nodes.py.
"""
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACK = "negguide"


def load_pack(name: str = PACK):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


load_pack()
