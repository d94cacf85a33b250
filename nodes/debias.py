"""Prompt debiasing node (math: guiders/debias.py) and its local BERT loader.

The masked LM lives in ComfyUI/models/bert/<name>/ (a Hugging Face folder: config.json, tokenizer files,
model.safetensors), e.g. bert-base-uncased. It is loaded on the CPU, used once and freed, so it never
competes with the diffusion model for GPU memory and needs no model management: a BERT-base-sized model
scores the ~20 variants of a 20-word prompt in a few seconds there (4.5 s measured on 2 CPU threads).
"""
import json
import os

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..guiders.debias import THRESHOLD, debias_prompt, format_report, masked_lm_scorer, parse_protected
from ..guiders.views import VIEWS
from ._hf import HF_OPTIONS, find_models
from .negatives import CATEGORY
from .views import ViewPrompts

FOLDER = "bert"
NONE_FOUND = "(no masked LM in models/bert)"
folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def model_folders() -> list:
    """Folders (one or two levels deep) under models/bert that hold a Hugging Face config.json."""
    return sorted({name for root in folder_paths.get_folder_paths(FOLDER) for name in find_models(root)})


def resolve(name: str) -> str:
    for root in folder_paths.get_folder_paths(FOLDER):
        path = os.path.join(root, name)
        if os.path.isfile(os.path.join(path, "config.json")):
            return path
    roots = ", ".join(folder_paths.get_folder_paths(FOLDER))
    raise ValueError(f"bert_model: no masked language model {name!r} found. Put a Hugging Face BERT uncased folder "
                     f"(config.json, tokenizer files, model.safetensors; e.g. bert-base-uncased) into one of: {roots}")


def load_masked_lm(path: str):
    """Tokenizer and masked LM from a local folder, on the CPU, offline, without remote code."""
    try:
        from transformers import AutoModelForMaskedLM, AutoTokenizer
    except ImportError as e:
        raise ValueError("bert_model: prompt debiasing needs the 'transformers' package (pip install transformers)") from e
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        model_type = json.load(f).get("model_type", "?")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **HF_OPTIONS)
        model, info = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True, output_loading_info=True,
                                                           **HF_OPTIONS)
    except Exception as e:  # transformers raises many kinds for broken folders; all mean the same to the user
        raise ValueError(f"bert_model: cannot load {path} (model_type {model_type}) as a masked language model with "
                         f"safetensors weights ({type(e).__name__}: {e})") from e
    if info.get("missing_keys"):  # random weights would give random view probabilities without any error
        raise ValueError(f"bert_model: {path} lacks weights of its masked-LM head ({sorted(info['missing_keys'])[:3]}); "
                         "use a checkpoint saved as a masked LM, e.g. bert-base-uncased")
    return tokenizer, model.eval()


class DebiasViewPrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideDebiasViewPrompts",
            display_name="Debias View Prompts (NegGuide)",
            category=CATEGORY,
            description="Prompt debiasing (Hong et al. 2023): a BERT masked language model estimates how each word of "
                        "the prompt changes the odds of a front/side/back/overhead view, and drops a word from the "
                        "prompts of the views it works against (e.g. 'smiling' from the back view). Feed view_prompts "
                        "to 'View Conditioning (NegGuide)'. The model runs on the CPU from models/bert.",
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The object, without view words, e.g. \"a smiling corgi wearing a red hat\"."),
                io.Combo.Input("bert_model", options=model_folders() or [NONE_FOUND],
                               tooltip="A BERT uncased masked LM folder in ComfyUI/models/bert (e.g. bert-base-uncased "
                                       "with config.json, tokenizer files and model.safetensors)."),
                io.String.Input("protected_words", default="",
                                tooltip="Words never removed, separated by commas or spaces (e.g. the object's name)."),
                io.Float.Input("threshold", default=THRESHOLD, min=0.0, max=1.0, step=0.01,
                               tooltip="A word is removed from a view's prompt when its probability ratio for that view "
                                       "is below this (paper: 0.95; lower removes less)."),
            ],
            outputs=[
                ViewPrompts.Output(display_name="view_prompts", tooltip="The debiased prompt of every view."),
                io.String.Output(display_name="report", tooltip="What was removed from which view, with the ratios."),
            ],
        )

    @classmethod
    def execute(cls, prompt, bert_model, protected_words, threshold) -> io.NodeOutput:
        if not prompt.strip():
            raise ValueError("prompt: empty prompt; write what the object is, e.g. \"a corgi wearing a red hat\"")
        tokenizer, model = load_masked_lm(resolve(bert_model))
        pbar = comfy.utils.ProgressBar(len(prompt.split()) + 1)

        def on_batch(done):
            comfy.model_management.throw_exception_if_processing_interrupted()
            pbar.update(done)

        scorer = masked_lm_scorer(tokenizer, model, VIEWS, on_batch=on_batch)
        prompts, report = debias_prompt(prompt, scorer, VIEWS, parse_protected(protected_words), threshold)
        del tokenizer, model
        return io.NodeOutput(prompts, format_report(prompt, prompts, report, threshold))


NODES = [DebiasViewPrompts]
