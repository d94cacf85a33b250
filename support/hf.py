"""Local Hugging Face models without ComfyUI: image-to-text captioners (find, check, load, caption) and the
masked language model of prompt debiasing.

One generic captioning path (AutoProcessor + AutoModelForImageTextToText + generate) covers BLIP, BLIP-2, GIT,
Florence-2 in transformers' own format, LLaVA-family, PaliGemma, Qwen-VL and SmolVLM. Files are read
from disk only (local_files_only) and a model's own Python code is never run (trust_remote_code=False).
"""
import json
import os

import numpy as np
import torch

CONFIG = "config.json"
FAMILIES = ("BLIP (e.g. Salesforce/blip-image-captioning-large), BLIP-2, GIT, Florence-2 converted to transformers' "
            "format, LLaVA, PaliGemma, Qwen2-VL, SmolVLM")
WHAT_TO_PUT = ("a complete Hugging Face model folder (config.json, *.safetensors weights, tokenizer and processor "
               f"files) of an image-to-text model: {FAMILIES}")
DEFAULT_QUESTION = "Describe this image in one sentence."  # chat models need a question; the paper gives none
HF_OPTIONS = {"local_files_only": True, "trust_remote_code": False}


def find_models(root: str, depth: int = 2) -> list[str]:
    """Folders (relative, '/'-separated) at most `depth` levels below root that hold a config.json."""
    found = []

    def walk(folder, rel, level):
        try:
            entries = sorted((e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")),
                             key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if os.path.isfile(os.path.join(entry.path, CONFIG)):
                found.append(name)
            elif level < depth:
                walk(entry.path, name, level + 1)

    walk(root, "", 1)
    return found


def read_config(path: str, where: str, what: str) -> dict:
    """A model folder's config.json as a dict, or a ValueError that names the folder (where) and says what belongs
    there (what)."""
    config_file = os.path.join(path, CONFIG)
    if not os.path.isfile(config_file):
        raise ValueError(f"{where} has no {CONFIG}. Put {what} there.")
    try:
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{where}: {CONFIG} cannot be read ({e}). The download is probably incomplete or corrupt: "
                         f"download the model folder again. NegGuide needs {what}.") from e
    if not isinstance(config, dict):
        raise ValueError(f"{where}: {CONFIG} is not a JSON object; download the model folder again.")
    return config


def image_to_text_auto():
    """(Auto class, model_type -> class name mapping) for image-to-text models on the installed transformers.
    AutoModelForImageTextToText arrived in 4.46; ComfyUI allows 4.37, whose Vision2Seq auto class covers BLIP,
    BLIP-2, GIT and LLaVA-style models."""
    import transformers
    from transformers.models.auto import modeling_auto

    if hasattr(transformers, "AutoModelForImageTextToText"):
        return transformers.AutoModelForImageTextToText, modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    return transformers.AutoModelForVision2Seq, modeling_auto.MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES


def dtype_option(dtype) -> dict:
    """transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name warns there, and 4.37-4.55
    ignore the new one and load fp32)."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def refuse_remote_code(config: dict, where: str, instead: str):
    """A model that needs its own Python code would fail deep in transformers with an unrelated message; NegGuide
    never runs such code, so say so and what to use instead."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if config.get("auto_map") and model_type not in CONFIG_MAPPING_NAMES:
        raise ValueError(f"{where} needs its own Python code (auto_map in {CONFIG}, model_type {model_type!r} "
                         f"unknown to transformers). NegGuide never runs code shipped with a model "
                         f"(trust_remote_code=False): use {instead}.")


def check_folder(path: str) -> dict:
    """The folder's config, or a ValueError that names the folder and says what belongs there."""
    where = f"captioner folder {path}"
    config = read_config(path, where, WHAT_TO_PUT)
    model_type = config.get("model_type")
    if model_type not in image_to_text_auto()[1]:
        refuse_remote_code(config, where, "a version converted to transformers' native format (for Florence-2, a "
                           "community conversion) or another captioner")
        what = f"a {model_type!r} model" if model_type else f"a folder whose {CONFIG} has no model_type"
        raise ValueError(f"{where} holds {what}, which transformers cannot run as an image-to-text model. "
                         f"Put {WHAT_TO_PUT} there (or update transformers if this is a newer architecture).")
    if not any(name.endswith(".safetensors") for name in os.listdir(path)):
        raise ValueError(f"{where} has no .safetensors weights. NegGuide loads only safetensors (no pickled .bin): "
                         "download the safetensors version of the model.")
    return config


def load(path: str, dtype: torch.dtype):
    """(processor, model) from a checked local folder, on the CPU, in eval mode."""
    from transformers import AutoProcessor

    config = check_folder(path)
    hint = ("This folder ships its own code (auto_map in config.json), which NegGuide never runs: use a version "
            "converted to transformers' native format." if config.get("auto_map") else
            f"Make sure the folder is complete: NegGuide needs {WHAT_TO_PUT}.")
    try:
        processor = AutoProcessor.from_pretrained(path, **HF_OPTIONS)
        model, info = image_to_text_auto()[0].from_pretrained(
            path, use_safetensors=True, output_loading_info=True, **dtype_option(dtype), **HF_OPTIONS)
    except Exception as e:  # transformers raises many kinds for broken folders; all mean the same to the user
        raise ValueError(f"captioner folder {path} could not be loaded ({type(e).__name__}: {e}). {hint}") from e
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # random weights would caption garbage without any error
        raise ValueError(f"captioner folder {path}: its weights do not fit the {config['model_type']!r} architecture "
                         f"({len(missing)} missing, e.g. {missing[:3]}). {hint}")
    if getattr(processor, "image_processor", None) is None:
        raise ValueError(f"captioner folder {path} has no image processor files (preprocessor_config.json or "
                         f"processor_config.json). {hint}")
    return processor, model.eval()


def to_pil(images: torch.Tensor) -> list:
    """ComfyUI IMAGE [B, H, W, C] floats in 0..1 -> list of RGB PIL images."""
    from PIL import Image

    pixels = (images[..., :3].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]


def texts_for(processor, prompt: str, count: int):
    """The text input for a batch: the chat template for chat models, the bare prompt (or none) otherwise."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt or DEFAULT_QUESTION}]}]
        return [processor.apply_chat_template(messages, add_generation_prompt=True)] * count
    return [prompt] * count if prompt else None


def strip_echo(text: str, prompt: str) -> str:
    """Captioners such as BLIP repeat a text prompt before the caption; keep only the caption."""
    text = " ".join(text.split())
    prompt = " ".join(prompt.split())
    if prompt and text.lower().startswith(prompt.lower()):
        text = text[len(prompt):].lstrip(" ,.:;")
    return text


def caption(model, processor, images: list, prompt: str, max_new_tokens: int, device) -> list[str]:
    """Caption all images with ONE processor call and ONE generate call. Greedy, so captions are reproducible."""
    texts = texts_for(processor, prompt, len(images))
    inputs = processor(images=images, text=texts, return_tensors="pt", **({"padding": True} if texts else {}))
    inputs.pop("token_type_ids", None)  # one text segment: all zeros, and GIT's generate rejects the key
    dtype = model.dtype
    inputs = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if torch.is_tensor(v) else v
              for k, v in inputs.items()}
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    ids = inputs.get("input_ids")
    if ids is not None and out.shape[1] >= ids.shape[1] and torch.equal(out[:, :ids.shape[1]], ids):
        out = out[:, ids.shape[1]:]  # decoder-only models return the prompt tokens first
    return [strip_echo(t, prompt) for t in processor.batch_decode(out, skip_special_tokens=True)]


def load_masked_lm(path: str, input_name: str = "bert_model"):
    """Tokenizer and masked LM from a local folder, on the CPU, offline, without remote code."""
    try:
        from transformers import AutoModelForMaskedLM, AutoTokenizer
    except ImportError as e:
        raise ValueError(f"{input_name}: prompt debiasing needs the 'transformers' package (pip install transformers)") from e
    where = f"{input_name}: folder {path}"
    config = read_config(path, where, "a BERT uncased masked LM folder (config.json, tokenizer files, model.safetensors)")
    refuse_remote_code(config, where, "a BERT in transformers' own format, e.g. bert-base-uncased")
    model_type = config.get("model_type", "?")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **HF_OPTIONS)
        model, info = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True, output_loading_info=True,
                                                           **HF_OPTIONS)
    except Exception as e:  # transformers raises many kinds for broken folders; all mean the same to the user
        raise ValueError(f"{input_name}: cannot load {path} (model_type {model_type}) as a masked language model with "
                         f"safetensors weights ({type(e).__name__}: {e})") from e
    if info.get("missing_keys"):  # random weights would give random view probabilities without any error
        raise ValueError(f"{input_name}: {path} lacks weights of its masked-LM head ({sorted(info['missing_keys'])[:3]}); "
                         "use a checkpoint saved as a masked LM, e.g. bert-base-uncased")
    return tokenizer, model.eval()
