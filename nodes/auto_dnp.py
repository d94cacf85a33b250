"""NegGuideAutoDNP: the whole diffusion-negative prompting loop in one node.

DNS sample (same seed) -> VAE decode -> caption -> encode the caption as the negative -> final pass.
With a latent batch, image i gets the caption of its own DNS image as its negative.
"""
import logging

import comfy.samplers
import torch
from comfy_api.latest import io

from ..guiders.views import mix_conditionings
from ._checks import check_finite
from ._common import SAMPLING, Captioner, encode
from ._sampling import check_choice, ksampler_inputs, sample_with_guider
from .captioner import caption_inputs
from .dns import SCALE_TOOLTIP, dns_guider
from .perp_neg import build_guider as perp_neg_guider


def decode(vae, latent: dict) -> torch.Tensor:
    """What VAE Decode does."""
    images = vae.decode(latent["samples"])
    return images.reshape(-1, *images.shape[-3:]) if images.ndim == 5 else images


def caption_negative(clip, captions: list[str]):
    """The negative CONDITIONING: each image's own caption where the encoder output allows it (batch row i is
    caption i, stacked the way View Conditioning stacks its per-image prompts)."""
    if len(set(captions)) == 1:
        return encode(clip, captions[0])
    encoded = {i: encode(clip, c) for i, c in enumerate(captions)}
    try:
        return mix_conditionings(encoded, [{i: 1.0} for i in encoded])
    except ValueError:
        logging.warning("NegGuide auto-DNP: this text encoder's outputs cannot be stacked per image; "
                        "every image gets all captions as one negative.")
        return encode(clip, "\n".join(captions))


def final_guider(model, positive, empty, negative, cfg, final_guidance, neg_weight):
    if final_guidance == "perp_neg":
        return perp_neg_guider(model, positive, empty, cfg, negative=negative, neg_weight=neg_weight)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider


class AutoDNP(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideAutoDNP",
            display_name="Auto-DNP KSampler (NegGuide)",
            category=SAMPLING,
            description="Diffusion-negative prompting (Desai & Vasconcelos 2024) in one node: samples the DNS image "
                        "(what the model thinks your prompt is NOT) with the final pass's seed, captions it, and "
                        "uses the caption as the negative prompt of the final pass (plain CFG or Perp-Neg).",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model."),
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP: encodes the empty prompt and the caption."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE: decodes the DNS image for the captioner."),
                Captioner.Input("captioner", tooltip="From 'Load Captioner (NegGuide)'."),
                io.Conditioning.Input("positive", tooltip="Your prompt."),
                io.Latent.Input("latent_image", tooltip="The latent to denoise (used for both passes)."),
                *ksampler_inputs(),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="CFG scale of the final pass."),
                io.Float.Input("dns_scale", default=-1.0, min=-1.0, max=100.0, step=0.1, round=0.01,
                               tooltip=SCALE_TOOLTIP + " -1 = use cfg (the default)."),
                io.Combo.Input("final_guidance", options=["cfg", "perp_neg"], default="cfg",
                               tooltip="cfg: plain CFG with the caption as negative (the paper). perp_neg: Perp-Neg, "
                                       "which removes only the part of the caption that is not in your prompt."),
                io.Float.Input("neg_weight", default=1.5, min=0.0, max=100.0, step=0.05,
                               tooltip="Perp-Neg weight of the caption (perp_neg only)."),
                *caption_inputs("caption_prompt"),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The final image(s)."),
                     io.Image.Output(display_name="dns_image", tooltip="The diffusion-negative image(s)."),
                     io.String.Output(display_name="caption", tooltip="The caption(s) used as negative, one line per image."),
                     io.Latent.Output(display_name="latent", tooltip="The final latent.")],
        )

    @classmethod
    def execute(cls, model, clip, vae, captioner, positive, latent_image, seed, steps, sampler_name, scheduler, denoise,
                cfg, dns_scale, final_guidance, neg_weight, caption_prompt, **caption_options) -> io.NodeOutput:
        check_finite(cfg=cfg, dns_scale=dns_scale, neg_weight=neg_weight)  # before the DNS pass, not after it
        check_choice("final_guidance", final_guidance, ["cfg", "perp_neg"])
        empty = encode(clip, "")

        def run(guider):
            return sample_with_guider(guider, latent_image, seed, steps, sampler_name, scheduler, denoise)

        dns_images = decode(vae, run(dns_guider(model, positive, empty, cfg if dns_scale < 0 else dns_scale)))
        captions = captioner.caption(dns_images, prompt=caption_prompt, **caption_options)
        negative = caption_negative(clip, captions)
        final = run(final_guider(model, positive, empty, negative, cfg, final_guidance, neg_weight))
        return io.NodeOutput(decode(vae, final), dns_images, "\n".join(captions), final)


NODES = [AutoDNP]
