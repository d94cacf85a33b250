"""DNS: diffusion-negative sampling.

Desai and Vasconcelos, "Improving Image Synthesis with Diffusion-Negative Sampling" (ECCV 2024),
eq. 19-20: sample what the model believes the prompt p is NOT, by guiding away from p only:

    D = D_empty + s * (D_empty - D_p)

It is negative prompting with an empty positive: two-term CFG with positive "" and negative p at
scale c is D_p + c * (D_empty - D_p) = D_empty + (c - 1) * (D_empty - D_p), i.e. DNS at s = c - 1.
The paper's s is what the nodes expose; cfg_for_dns converts it for ComfyUI's CFG.
"""
import torch


def cfg_for_dns(scale: float) -> float:
    """The two-term CFG scale (positive "", negative p) that gives DNS at the paper's scale s."""
    return float(scale) + 1.0


def dns(d_empty: torch.Tensor, d_prompt: torch.Tensor, scale: float) -> torch.Tensor:
    """The DNS denoised prediction, eq. 19-20, in d_empty's dtype. Elementwise, so per sample."""
    out = d_empty.float() + scale * (d_empty.float() - d_prompt.float())
    return out.to(d_empty.dtype)
