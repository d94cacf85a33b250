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


def check_finite(**named):
    """Numbers must be finite: the host's range check lets NaN through (every comparison with NaN is False), and a
    NaN scale or weight would turn every image into noise without an error."""
    for name, value in named.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: {value!r} is not a finite number; set a number in the widget's range (NaN or inf "
                             "only come from an edited workflow file or an API call)")
