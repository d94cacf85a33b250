"""Input checks that turn deep tensor errors into messages naming the input and the fix."""
import math


def cond_width(conditioning):
    """Embedding width of a CONDITIONING (last dim of its cross-attention tensor), or None."""
    for emb, _ in conditioning or []:
        if emb is not None and hasattr(emb, "shape") and emb.ndim >= 2:
            return int(emb.shape[-1])
    return None


def check_family(model, named: dict):
    """All conditionings must come from the same text encoder family as each other and the model."""
    expected = None
    config = getattr(getattr(getattr(model, "model", None), "model_config", None), "unet_config", None) or {}
    if isinstance(config.get("context_dim"), int):
        expected = ("the model", config["context_dim"])
    for name, cond in named.items():
        if cond is None:
            continue
        if not isinstance(cond, list) or not cond:
            raise ValueError(f"{name}: expected a CONDITIONING (e.g. from CLIP Text Encode), got {type(cond).__name__} {cond!r:.60}")
        width = cond_width(cond)
        if width is None:
            continue
        if expected is None:
            expected = (name, width)
        elif width != expected[1]:
            raise ValueError(
                f"{name}: its text embeddings are {width} wide but {expected[0]} uses {expected[1]}. "
                "The conditionings come from a different model family: encode every prompt with the CLIP "
                "that belongs to this checkpoint.")


def weight_values(weight) -> list:
    """A negative's weight as a list: one value, or one per latent."""
    return list(weight) if isinstance(weight, (list, tuple)) else [weight]


def check_weight(label: str, weight, batch: int | None = None):
    """A negative weight: a number >= 0, or a list with one such number per latent."""
    values = weight_values(weight)
    if not values:
        raise ValueError(f"{label}: empty weight list; give one weight or one per latent")
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{label}: weight {v!r} is not allowed; negative weights must be finite numbers >= 0")
    if batch is not None and len(values) not in (1, batch):
        raise ValueError(f"{label}: {len(values)} per-sample weights for a latent batch of {batch}; "
                         "give one weight, or exactly one per latent in the batch")
