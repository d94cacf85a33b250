"""A random-weight SD1.5-layout checkpoint built with ComfyUI's own classes (never committed).

The UNet is shrunk (one level, channel_mult [1]) but keeps SD1.5's detection keys (320 channels,
768-wide context) so ComfyUI's loader recognises it as SD1.5; CLIP-L and the VAE are full size.
Every parameter gets a seeded init, so the file is the same in every session.
"""
import torch

UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [1], "transformer_depth": [1], "channel_mult": [1], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
    "transformer_depth_output": [1, 1], "use_temporal_attention": False, "use_temporal_resblock": False,
}
VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
       "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def seeded_init(module: torch.nn.Module, seed: int):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return module


def build(path, seed: int = 0):
    import comfy.ldm.models.autoencoder
    import comfy.model_management
    import comfy.sd1_clip
    import comfy.supported_models
    import safetensors.torch

    config = comfy.supported_models.SD15(dict(UNET))
    unet = seeded_init(config.get_model({}).diffusion_model, seed)
    clip = seeded_init(comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32), seed + 1)
    vae = seeded_init(comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(VAE), embed_dim=4), seed + 2)
    sd = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    sd.update(config.process_clip_state_dict_for_saving({f"clip_l.{k}": v for k, v in clip.state_dict().items()}))
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items() if v.is_floating_point()}
    safetensors.torch.save_file(sd, str(path))
    return path
