"""ComfyUI model folders that hold Hugging Face model folders (models/LLM for captioners, models/bert for debiasing).

ComfyUI has no folder name of its own for these. extra_model_paths.yaml entries under the same name are registered
before packs load; models/<name> is added after them, so both are searched. A combo lists what the scan finds, and
only those names resolve to a path (no path tricks from a saved workflow).
"""
import os

import folder_paths

from ..support.hf import find_models


class ModelFolder:
    def __init__(self, name: str, input_name: str, kind: str, what: str, example: str):
        """kind: what one model is ("captioner"); what: what its folder must hold; example: a folder name."""
        self.name, self.input_name, self.kind, self.what, self.example = name, input_name, kind, what, example
        self.none_found = f"(none installed in models/{name})"
        self.register()

    def register(self):
        folder_paths.add_model_folder_path(self.name, os.path.join(folder_paths.models_dir, self.name))

    def roots(self) -> list[str]:
        return folder_paths.get_folder_paths(self.name)

    def names(self) -> list[str]:
        """Model folders one or two levels below every root, in root order, each name once."""
        names = []
        for root in self.roots():
            names += [n for n in find_models(root) if n not in names]
        return names

    def options(self) -> list[str]:
        return self.names() or [self.none_found]

    def resolve(self, name: str) -> str:
        names = self.names()
        if name in names:
            for root in self.roots():
                path = os.path.join(root, *name.split("/"))
                if os.path.isdir(path):
                    return path
        where = " or ".join(self.roots())
        if names:
            raise ValueError(f"{self.input_name}: no {self.kind} {name!r} in {where}. Installed: {', '.join(names)}. "
                             f"Pick one of them, or put {self.what} in a sub-folder of models/{self.name} "
                             f"(e.g. {self.name}/{self.example}) and refresh the page.")
        unfinished = [os.path.join(root, e.name) for root in self.roots() if os.path.isdir(root)
                      for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
        seen = f" ({', '.join(unfinished)}: no config.json found, incomplete download?)" if unfinished else ""
        raise ValueError(f"{self.input_name}: no {self.kind} installed{seen}. Put {self.what} in a sub-folder of "
                         f"{where} (e.g. {self.name}/{self.example}), then refresh the page.")
