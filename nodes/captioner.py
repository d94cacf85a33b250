"""Captioner loader and caption nodes for auto-DNP (Hugging Face side: support/hf.py).

Captioners live in ComfyUI's models/LLM folder (plus any LLM entries of extra_model_paths.yaml). The
HF model sits inside a ModelPatcher so ComfyUI's memory manager loads, offloads and unloads it like
any other model.
"""
import logging

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import torch
from comfy_api.latest import io

from ..support import hf
from ._common import IMAGE, LOADERS, Captioner
from ._folders import ModelFolder

FOLDER = ModelFolder("LLM", "model_name", "captioner", hf.WHAT_TO_PUT, "blip-image-captioning-large")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_dtype(choice: str, device) -> torch.dtype:
    if choice in DTYPES:
        return DTYPES[choice]
    if mm.should_use_bf16(device):
        return torch.bfloat16
    return torch.float16 if mm.should_use_fp16(device) else torch.float32


class HFModule(torch.nn.Module):
    """ModelPatcher writes `model.device`, which is a read-only property on HF models: wrap them."""

    def __init__(self, hf_model, device):
        super().__init__()
        self.hf = hf_model
        self.device = device

    def get_dtype(self):
        return self.hf.dtype


class LoadedCaptioner:
    def __init__(self, name: str, path: str, dtype_choice: str = "auto"):
        load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
        self.name, self.path = name, path
        self.processor, model = hf.load(path, pick_dtype(dtype_choice, load_device))
        self.patcher = comfy.model_patcher.ModelPatcher(HFModule(model, offload_device), load_device, offload_device)

    def load(self):
        # HF layers are not ComfyUI ops, so they cannot run partially offloaded: always load fully.
        mm.load_models_gpu([self.patcher], force_full_load=True)

    def unload(self):
        for i, loaded in enumerate(mm.current_loaded_models):
            if loaded.model is self.patcher:
                mm.current_loaded_models.pop(i).model_unload()
                break
        mm.soft_empty_cache()

    def caption(self, images: torch.Tensor, prompt: str = "", max_new_tokens: int = 60, images_per_call: int = 8,
                unload_after: bool = False) -> list[str]:
        """One caption per image; each group of images_per_call images is ONE generate call."""
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"image: expected an IMAGE batch [B, H, W, C], got shape {tuple(images.shape)}")
        captions = []
        progress = comfy.utils.ProgressBar(images.shape[0])
        try:
            self.load()
            for start in range(0, images.shape[0], images_per_call):
                mm.throw_exception_if_processing_interrupted()
                chunk = images[start:start + images_per_call]
                captions += hf.caption(self.patcher.model.hf, self.processor, hf.to_pil(chunk), prompt,
                                        max_new_tokens, self.patcher.load_device)
                progress.update(chunk.shape[0])
        finally:
            if unload_after:
                self.unload()
        for i, text in enumerate(captions):
            if not text:
                raise ValueError(f"captioner {self.name} ({self.path}) returned an empty caption for image {i}. "
                                 "Raise max_new_tokens, change or clear the prompt, or put another captioner in "
                                 f"models/{FOLDER.name}: {hf.FAMILIES}.")
        logging.info("NegGuide captions from %s: %s", self.name, captions)
        return captions


def caption_inputs(prompt_name: str = "prompt"):
    return [
        io.String.Input(prompt_name, default="", multiline=True,
                        tooltip="Optional text prompt. BLIP/GIT: a caption prefix (e.g. 'a photography of'), removed "
                                "from the output. Florence-2: a task token such as <CAPTION>. PaliGemma: 'caption en'. "
                                f"Chat models (LLaVA, Qwen-VL, SmolVLM): the question; empty = '{hf.DEFAULT_QUESTION}'"),
        io.Int.Input("max_new_tokens", default=60, min=1, max=1024,
                     tooltip="Maximum caption length in tokens. The paper used captions shorter than 60 words."),
        io.Int.Input("images_per_call", default=8, min=1, max=256,
                     tooltip="How many images go through the captioner in one generate call. Lower it if you run out of memory."),
        io.Boolean.Input("unload_after", default=False,
                         tooltip="Move the captioner off the GPU right after captioning. Off: ComfyUI offloads it "
                                 "when another model needs the memory."),
    ]


class CaptionerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideCaptionerLoader",
            display_name="Load Captioner (NegGuide)",
            category=LOADERS,
            description=f"Loads an image-to-text model from models/{FOLDER.name} (a Hugging Face folder: BLIP, BLIP-2, GIT, "
                        "converted Florence-2, LLaVA, PaliGemma, Qwen-VL, SmolVLM) for diffusion-negative prompting. "
                        "Local files only; code shipped with a model is never run.",
            inputs=[
                io.Combo.Input("model_name", options=FOLDER.options(),
                               tooltip=f"A model folder under models/{FOLDER.name} (searched two levels deep for config.json)."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight precision. auto: bf16 or fp16 where ComfyUI's model management says the "
                                       "device supports it, else fp32."),
            ],
            outputs=[Captioner.Output(display_name="captioner")],
        )

    @classmethod
    def execute(cls, model_name, dtype="auto") -> io.NodeOutput:
        return io.NodeOutput(LoadedCaptioner(model_name, FOLDER.resolve(model_name), dtype))


class CaptionImages(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideCaption",
            display_name="Caption Images (NegGuide)",
            category=IMAGE,
            description="Captions each image with a captioner. For diffusion-negative prompting, caption the DNS image "
                        "and encode the caption as the negative prompt of the final pass.",
            inputs=[Captioner.Input("captioner", tooltip="From 'Load Captioner (NegGuide)'."),
                    io.Image.Input("image", tooltip="The images to caption (e.g. the decoded DNS sample).")]
            + caption_inputs(),
            outputs=[io.String.Output(display_name="caption",
                                      tooltip="All captions, one line per image (a single caption for one image)."),
                     io.String.Output(display_name="captions", is_output_list=True,
                                      tooltip="The captions as a list, one per image.")],
        )

    @classmethod
    def execute(cls, captioner, image, **kwargs) -> io.NodeOutput:
        captions = captioner.caption(image, **kwargs)
        return io.NodeOutput("\n".join(captions), captions)


NODES = [CaptionerLoader, CaptionImages]
