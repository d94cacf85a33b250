"""Tiny random models of the families people run, built in-process from ComfyUI's own model configs (no files).

Each family's diffusion model is its comfy.supported_models config class (SD15, SDXL, SD3, Flux dev, WAN21_T2V)
given a shrunk unet_config: one block, narrow width, but the interface widths that conditioning must match kept as
the real models have them (cross-attention 768 / 2048 / 4096, SDXL's 2816-wide ADM vector, SD3's 2048 pooled, Flux's
768 pooled and guidance embedder, Wan's 4096-wide T5 context and 5-D video latents). The text encoders are the
family's own ComfyUI CLIP target (tokenizers, SDXL/SD3/Flux/Wan encoder wrappers, layer choice, pooling, padding),
shrunk through ComfyUI's "<name>_model_config" option (few layers, narrow feed-forward) with the token table folded
to 256 rows (id mod 256) so that CLIP-G, T5-XXL and UMT5-XXL cost megabytes, not gigabytes. Wan's UMT5 tokenizer is
stored inside real Wan text encoder files; the tiny one uses the sentencepiece model ComfyUI ships for its T5-pile
encoders instead. Every weight gets a seeded init, so each build is the same in every session.
"""
import functools
import os

import torch

from tiny_sd15 import UNET as SD15_UNET, seeded_init

FAMILIES = ("sd15", "sdxl", "sd3", "flux", "wan21", "chroma")

UNETS = {
    "sd15": {**SD15_UNET, "model_channels": 32},  # the config adds 8 heads
    "sdxl": {**SD15_UNET, "model_channels": 64, "context_dim": 2048,  # the config adds 64-wide heads
             "adm_in_channels": 2816, "use_linear_in_transformer": True, "num_classes": "sequential"},
    "sd3": {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 1, "input_size": None,
            "adm_in_channels": 2048, "pos_embed_max_size": 16, "num_patches": 256, "pos_embed_scaling_factor": None,
            "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 64}}},
    "flux": {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16, "patch_size": 2,
             "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2,
             "depth": 1, "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "qkv_bias": True},
    "chroma": {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "patch_size": 2, "context_in_dim": 4096,
               "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
               "axes_dim": [8, 12, 12], "theta": 10000, "qkv_bias": True, "in_dim": 64, "out_dim": 64,
               "hidden_dim": 32, "n_layers": 1},
    "wan21": {"image_model": "wan2.1", "model_type": "t2v", "dim": 64, "ffn_dim": 64, "num_heads": 2, "num_layers": 1,
              "in_dim": 16, "out_dim": 16, "text_len": 512, "freq_dim": 256, "patch_size": (1, 2, 2),
              "window_size": (-1, -1), "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6},
}
CONFIGS = {"sd15": "SD15", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux", "wan21": "WAN21_T2V", "chroma": "Chroma"}
# What each family's text encoders give a prompt: (cross-attention width, pooled width or None).
WIDTHS = {"sd15": (768, None), "sdxl": (2048, 1280), "sd3": (4096, 2048), "flux": (4096, 768), "wan21": (4096, None),
          "chroma": (4096, None)}

TEXT_LAYERS = {"num_hidden_layers": 3, "intermediate_size": 64}  # 3: SDXL reads CLIP's penultimate layer
T5_LAYERS = {"num_layers": 1, "d_ff": 32, "d_kv": 16, "num_heads": 2, "vocab_size": 256}
TEXT_OPTIONS = {"clip_l_model_config": TEXT_LAYERS, "clip_g_model_config": TEXT_LAYERS,
                "t5xxl_model_config": T5_LAYERS, "umt5xxl_model_config": T5_LAYERS}
VOCAB_ROWS = 256


def device():
    import comfy.model_management
    return comfy.model_management.get_torch_device()


def config(family: str):
    import comfy.supported_models
    return getattr(comfy.supported_models, CONFIGS[family])(dict(UNETS[family]))


@functools.lru_cache(maxsize=None)
def model(family: str, seed: int = 0):
    """A ModelPatcher of the family's model_base class with seeded random weights (cached: clone before patching)."""
    import comfy.model_management
    import comfy.model_patcher
    base = config(family).get_model({})
    seeded_init(base.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(base, load_device=device(),
                                            offload_device=comfy.model_management.unet_offload_device())


class FoldedVocab(torch.nn.Module):
    """A token table of VOCAB_ROWS rows read at id mod VOCAB_ROWS: the real tables have 32k-256k rows."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(VOCAB_ROWS, width), requires_grad=False)

    def forward(self, ids, out_dtype=None):
        return self.weight[ids % VOCAB_ROWS].to(out_dtype or self.weight.dtype)


def clip_target(family: str):
    """The family config's own ClipTarget. SD3 picks its encoders from a checkpoint's keys: claim all three."""
    if family != "sd3":
        return config(family).clip_target({})
    pref = "text_encoders."
    found = {f"{pref}{n}.transformer.text_model.final_layer_norm.weight": torch.zeros(1) for n in ("clip_l", "clip_g")}
    found[f"{pref}t5xxl.transformer.encoder.final_layer_norm.weight"] = torch.zeros(1)
    return config(family).clip_target(found)


@functools.lru_cache(maxsize=None)
def clip(family: str, seed: int = 0):
    """A comfy.sd.CLIP of the family, fp32 on the CPU (cached: encode only, never patch)."""
    import comfy.sd
    import comfy.sd1_clip
    cpu = torch.device("cpu")
    options = {**TEXT_OPTIONS, "dtype": torch.float32, "load_device": cpu, "offload_device": cpu, "initial_device": cpu}
    data = {}
    if family == "wan21":
        import comfy.text_encoders.wan
        with open(os.path.join(os.path.dirname(comfy.text_encoders.wan.__file__), "t5_pile_tokenizer", "tokenizer.model"), "rb") as f:
            data["spiece_model"] = f.read()
    out = comfy.sd.CLIP(clip_target(family), tokenizer_data=data, model_options=options)
    for encoder in out.cond_stage_model.modules():
        if isinstance(encoder, comfy.sd1_clip.SDClipModel):
            width = encoder.transformer.get_input_embeddings().weight.shape[1]
            encoder.transformer.set_input_embeddings(FoldedVocab(width))
    seeded_init(out.cond_stage_model, seed + 1)
    return out


@functools.lru_cache(maxsize=None)
def vae(family: str, seed: int = 0):
    """A comfy.sd.VAE of the family's latent space with seeded random weights, built from a state dict as VAELoader
    builds one (ComfyUI reads the layout from the keys, so these are full size: SD's 4-channel and the 16-channel
    image autoencoder, Wan 2.1's causal 3-D one). Decoding gives noise-like images of the right shape."""
    import comfy.ldm.models.autoencoder
    import comfy.ldm.wan.vae
    import comfy.sd
    from tiny_sd15 import VAE
    channels = model(family).model.latent_format.latent_channels
    if family.startswith("wan"):
        net = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=channels, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                       attn_scales=[], temperal_downsample=[False, True, True])
    else:
        net = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig={**VAE, "z_channels": channels}, embed_dim=channels)
    return comfy.sd.VAE(sd=seeded_init(net, seed + 2).state_dict())


def encode(family: str, text: str):
    """What CLIP Text Encode gives for this family's tiny CLIP."""
    c = clip(family)
    return c.encode_from_tokens_scheduled(c.tokenize(text))


def noise(family: str, batch: int, seed: int = 0, size: int = 8, frames: int = 2):
    """Latent-space noise of the family's shape: [B, C, H, W], or [B, 16, T, H, W] for Wan video."""
    channels = model(family).model.latent_format.latent_channels
    shape = (batch, channels, frames, size, size) if family.startswith("wan") else (batch, channels, size, size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
