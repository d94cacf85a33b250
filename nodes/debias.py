"""Prompt debiasing node (math: guiders/debias.py) and its local BERT loader.

The masked LM lives in ComfyUI/models/bert/<name>/ (a Hugging Face folder: config.json, tokenizer files,
model.safetensors), e.g. bert-base-uncased. It is loaded on the CPU, used once and freed, so it never
competes with the diffusion model for GPU memory and needs no model management: a BERT-base-sized model
scores the ~20 variants of a 20-word prompt in a few seconds there (4.5 s measured on 2 CPU threads).
"""
import comfy.model_management
import comfy.utils
from comfy_api.latest import io

from ..guiders.debias import THRESHOLD, debias_prompt, format_report, masked_lm_scorer, parse_protected
from ..guiders.views import VIEWS
from ..support.hf import load_masked_lm
from ._common import CONDITIONING, ViewPrompts, require_prompt
from ._folders import ModelFolder

FOLDER = ModelFolder("bert", "bert_model", "masked language model",
                     "a Hugging Face BERT uncased folder (config.json, tokenizer files, model.safetensors)",
                     "bert-base-uncased")


class DebiasViewPrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideDebiasViewPrompts",
            display_name="Debias View Prompts (NegGuide)",
            category=CONDITIONING,
            description="Prompt debiasing (Hong et al. 2023): a BERT masked language model estimates how each word of "
                        "the prompt changes the odds of a front/side/back/overhead view, and drops a word from the "
                        "prompts of the views it works against (e.g. 'smiling' from the back view). Feed view_prompts "
                        "to 'View Conditioning (NegGuide)'. The model runs on the CPU from models/bert.",
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The object, without view words, e.g. \"a smiling corgi wearing a red hat\"."),
                io.Combo.Input("bert_model", options=FOLDER.options(),
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
        require_prompt(prompt)
        tokenizer, model = load_masked_lm(FOLDER.resolve(bert_model), "bert_model")
        pbar = comfy.utils.ProgressBar(len(prompt.split()) + 1)

        def on_batch(done):
            comfy.model_management.throw_exception_if_processing_interrupted()
            pbar.update(done)

        scorer = masked_lm_scorer(tokenizer, model, VIEWS, on_batch=on_batch)
        prompts, report = debias_prompt(prompt, scorer, VIEWS, parse_protected(protected_words), threshold)
        del tokenizer, model
        return io.NodeOutput(prompts, format_report(prompt, prompts, report, threshold))


NODES = [DebiasViewPrompts]
