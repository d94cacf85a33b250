"""DNS (diffusion-negative sampling) guider and sampler nodes (math: guiders/dns.py)."""
import comfy.samplers
from comfy_api.latest import io

from ..guiders.dns import cfg_for_dns
from ._checks import check_family, check_finite
from ._pair import node_pair

SCALE_TOOLTIP = ("DNS scale s of the paper (eq. 19-20): D = D_empty + s (D_empty - D_prompt). The paper does not "
                 "give a value; NegGuide's choice is the CFG scale of your final pass.")


def dns_guider(model, positive, empty_conditioning, dns_scale: float):
    """DNS is two-term CFG with the roles swapped (positive "", negative p) at cfg s + 1. Core's own
    CFGGuider does exactly that, so every model_options hook (RescaleCFG, CFGZeroStar, ...) keeps
    working and the result is bit-identical to what a user could wire by hand."""
    check_finite(dns_scale=dns_scale)
    if dns_scale < 0:
        raise ValueError(f"dns_scale: {dns_scale} is negative; DNS needs s >= 0 (0 = unconditional sample)")
    check_family(model, {"positive": positive, "empty_conditioning": empty_conditioning})
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(empty_conditioning, positive)
    guider.set_cfg(cfg_for_dns(dns_scale))
    return guider


INPUTS = [
    io.Model.Input("model", tooltip="The diffusion model."),
    io.Conditioning.Input("positive",
                          tooltip="Your prompt p. DNS samples what the model believes p is NOT: the diffusion-negative image."),
    io.Conditioning.Input("empty_conditioning", tooltip="The empty prompt (CLIP Text Encode with no text)."),
    io.Float.Input("dns_scale", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip=SCALE_TOOLTIP),
]


DESCRIPTION = ("Diffusion-negative sampling (Desai & Vasconcelos 2024): guides away from your prompt with an empty "
               "positive, showing what the model thinks the prompt is not. Caption that image and use the caption as "
               "the negative prompt of your final pass (diffusion-negative prompting). Same result as core CFG with "
               "positive \"\" and negative p at cfg = dns_scale + 1.")


NODES = node_pair("DNS", "DNS", DESCRIPTION, INPUTS, dns_guider,
                  sampler_note=" A drop-in for KSampler; use the same seed as your final pass.")
