"""Test-only custom nodes for the browser tier's server: the tiny models of tiny_families.py in place of the model
loaders of the family templates (SDXL, SD3.5, Flux, Wan). ComfyUI's own loaders only recognise full-depth
checkpoints of those families, so the test swaps each loader of a template's API prompt for the node here with the
same outputs (SWAPS) before queueing it; everything else in the graph runs as the user's would.

Linked into the server's custom_nodes/ by tests/host/_server.py (never shipped: the pack's tests/ folder is not a
custom node). Imported by ComfyUI, so tiny_families is found on the path the server prelude sets up.
"""
import tiny_families

FAMILY = {"family": (list(tiny_families.FAMILIES), {"tooltip": "Which tiny random family model to return."})}


class _Tiny:
    CATEGORY = "_negguide_tests"
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": FAMILY}


class TestTinyCheckpoint(_Tiny):
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")

    def load(self, family):
        return tiny_families.model(family).clone(), tiny_families.clip(family), tiny_families.vae(family)


class TestTinyDiffusionModel(_Tiny):
    RETURN_TYPES = ("MODEL",)

    def load(self, family):
        return (tiny_families.model(family).clone(),)


class TestTinyCLIP(_Tiny):
    RETURN_TYPES = ("CLIP",)

    def load(self, family):
        return (tiny_families.clip(family),)


class TestTinyVAE(_Tiny):
    RETURN_TYPES = ("VAE",)

    def load(self, family):
        return (tiny_families.vae(family),)


NODE_CLASS_MAPPINGS = {c.__name__: c for c in (TestTinyCheckpoint, TestTinyDiffusionModel, TestTinyCLIP, TestTinyVAE)}
# Core loader -> the node here with the same outputs in the same order.
SWAPS = {"CheckpointLoaderSimple": "TestTinyCheckpoint", "UNETLoader": "TestTinyDiffusionModel",
         "CLIPLoader": "TestTinyCLIP", "DualCLIPLoader": "TestTinyCLIP", "TripleCLIPLoader": "TestTinyCLIP",
         "VAELoader": "TestTinyVAE"}


def swap_loaders(prompt: dict, family: str) -> dict:
    """The API prompt with every model loader replaced by its tiny stand-in of this family (a new dict)."""
    return {key: {**node, "class_type": SWAPS[node["class_type"]], "inputs": {"family": family}}
            if node["class_type"] in SWAPS else node for key, node in prompt.items()}
