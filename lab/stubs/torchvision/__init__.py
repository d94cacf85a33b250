"""Stand-in for torchvision, which has no CPU build for this torch. ComfyUI imports it at start-up
(comfy/ldm/cascade, cosmos) but NegGuide's tests never call it; any real use fails loudly."""
from . import transforms  # noqa: F401


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"torchvision stand-in used by NegGuide's tests has no {name!r}; install real torchvision")
