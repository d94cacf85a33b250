"""What every node module shares: menu categories, the pack's socket types, and prompt encoding."""
from comfy_api.latest import io

SAMPLING = "sampling/custom_sampling/NegGuide"  # guiders, samplers and their diagnostics
CONDITIONING = "conditioning/NegGuide"          # negatives, view prompts, debiasing
LOADERS = "loaders/NegGuide"
IMAGE = "image/NegGuide"

Negatives = io.Custom("NEGGUIDE_NEGATIVES")  # [{"conditioning", "weight", "label"}], from Add Negative or views
ViewPrompts = io.Custom("NEGGUIDE_VIEW_PROMPTS")  # {view: prompt}, from Debias View Prompts
Captioner = io.Custom("NEGGUIDE_CAPTIONER")


def encode(clip, text: str):
    """What core's CLIP Text Encode does (keeps pooled_output and CLIP hook schedules)."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def require_prompt(text, name: str = "prompt") -> str:
    if not str(text).strip():
        raise ValueError(f"{name}: empty prompt; write what the object is, e.g. \"a corgi wearing a red hat\"")
    return str(text).strip()
