"""Dev script: builds the family templates (SDXL, Flux dev, Wan 2.1 video, SD3.5) in the real ComfyUI frontend and
saves what it serialises, with the loaders and file names those models ship with (ComfyUI's own examples' names).

    python scripts/make_workflow_families.py [--url http://127.0.0.1:8188]

With --url it uses a running ComfyUI that has NegGuide installed; without, it starts one (scripts/comfy_frontend.py).
Then run scripts/refresh_templates.py (un-overlaps nodes) and scripts/make_thumbnails.py.
"""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_workflow_perp_neg", ROOT / "scripts" / "make_workflow_perp_neg.py")
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)
cf = mw.cf

PROMPT_X, SAMPLER_X, OUT_X = 440, 900, 1240
SIZES = {**mw.SIZES, "PreviewImage": [400, 380]}


def prompts(clip: str, texts: list, x=PROMPT_X):
    """CLIP Text Encode boxes stacked in one column: (key, text, title) each; returns nodes and links."""
    nodes = {key: ("CLIPTextEncode", [x, 20 + 190 * i], {"text": text}, title) for i, (key, text, title) in enumerate(texts)}
    return nodes, [(clip, "CLIP", key, "clip") for key, _, _ in texts]


def ksampler(node_type, pos, widgets, model, positive, empty, latent, negative=("neg", "negative")):
    links = [(model, "MODEL", "ks", "model"), (positive, 0, "ks", "positive"), (empty, 0, "ks", "empty_conditioning"),
             (negative[0], 0, "ks", negative[1]), (latent, 0, "ks", "latent_image")]
    return {"ks": (node_type, pos, widgets, None)}, links


def decode(vae, save_type, widgets, y=20):
    nodes = {"decode": ("VAEDecode", [OUT_X, y], {}, None), "save": (save_type, [OUT_X, y + 100], widgets, None)}
    return nodes, [("ks", 0, "decode", "samples"), (vae, "VAE", "decode", "vae"), ("decode", "IMAGE", "save", "images")]


def note(text, y=20):
    return {"note": ("Note", [20, y], {"text": text}, "About this workflow")}


def sdxl():
    text = ("Perp-Neg on SDXL (NegGuide). First pick your checkpoint in Load Checkpoint (an SDXL base model such as "
            "sd_xl_base_1.0; Pony and Illustrious finetunes are SDXL too). Two view negatives, 'front view' and "
            "'back view', remove only their parts perpendicular to the prompt, so the side view stays without "
            "cancelling the fox. 1024 px, 25 steps. neg_weight 0 = plain CFG, to compare.")
    p, pl = prompts("ckpt", [("pos", "a photo of a red fox in the snow, side view, detailed fur", "Positive prompt"),
                             ("neg", "front view", "Negative prompt"), ("neg2", "back view", "Negative prompt 2"),
                             ("empty", "", "Empty prompt (unconditional)")])
    k, kl = ksampler("NegGuidePerpNegSampler", [SAMPLER_X, 20],
                     {"cfg": 7.0, "neg_weight": 1.5, "seed": 42, "control_after_generate": "fixed", "steps": 25,
                      "sampler_name": "dpmpp_2m", "scheduler": "karras"}, "ckpt", "pos", "empty", "latent")
    d, dl = decode("ckpt", "SaveImage", {"filename_prefix": "NegGuide_SDXL_PerpNeg"})
    nodes = {**note(text), "ckpt": ("CheckpointLoaderSimple", [20, 300], {"ckpt_name": "sd_xl_base_1.0.safetensors"}, None),
             **p, "latent": ("EmptyLatentImage", [PROMPT_X, 780], {"width": 1024, "height": 1024, "batch_size": 1}, None),
             "add": ("NegGuideAddNegative", [SAMPLER_X, 700], {"weight": 1.0}, None), **k, **d}
    return nodes, pl + kl + dl + [("neg2", 0, "add", "conditioning"), ("add", 0, "ks", "more_negatives")]


def flux():
    text = ("Negative prompt on Flux dev at cfg 1 (NegGuide Perp-Neg). First pick your model in Load Diffusion Model "
            "(flux1-dev), the two text encoders in DualCLIPLoader (clip_l and t5xxl, type flux) and ae.safetensors in "
            "Load VAE. Flux dev is guidance-distilled: keep cfg at 1 and set the strength with FluxGuidance. Core "
            "ComfyUI ignores the negative at cfg 1; here the output is D_pos - w * (negative's part perpendicular to "
            "the prompt), with the positive, empty and negative prompts in one batched model call (about the cost of "
            "true CFG). Start with neg_weight 1; 0 = plain Flux.")
    p, pl = prompts("clip", [("pos", "a cozy cabin in a snowy forest at dusk, warm light in the windows", "Positive prompt"),
                             ("neg", "blurry, text, watermark, oversaturated", "Negative prompt"),
                             ("empty", "", "Empty prompt (unconditional)")])
    k, kl = ksampler("NegGuidePerpNegSampler", [SAMPLER_X, 20],
                     {"cfg": 1.0, "neg_weight": 1.0, "seed": 42, "control_after_generate": "fixed", "steps": 20,
                      "sampler_name": "euler", "scheduler": "simple"}, "unet", "guidance", "empty", "latent")
    d, dl = decode("vae", "SaveImage", {"filename_prefix": "NegGuide_Flux_PerpNeg"})
    nodes = {**note(text), "unet": ("UNETLoader", [20, 320], {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}, None),
             "clip": ("DualCLIPLoader", [20, 470], {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                                   "type": "flux"}, None),
             "vae": ("VAELoader", [20, 660], {"vae_name": "ae.safetensors"}, None), **p,
             "guidance": ("FluxGuidance", [PROMPT_X, 590], {"guidance": 3.5}, None),
             "latent": ("EmptySD3LatentImage", [PROMPT_X, 720], {"width": 1024, "height": 1024, "batch_size": 1}, None),
             **k, **d}
    return nodes, pl + kl + dl + [("pos", 0, "guidance", "conditioning")]


def wan():
    text = ("Wan 2.1 text to video with Perp-Neg negatives (NegGuide). First pick your model in Load Diffusion Model "
            "(wan2.1_t2v_1.3B or 14B), umt5_xxl in Load CLIP (type wan) and wan_2.1_vae in Load VAE. The negatives "
            "remove only their parts perpendicular to the prompt, per video; all prompts run in one batched model "
            "call. 832x480, 33 frames. neg_weight 0 = plain CFG, to compare.")
    p, pl = prompts("clip", [("pos", "a red fox running through fresh snow, side view, tracking shot, golden hour", "Positive prompt"),
                             ("neg", "static, still frame, frozen motion", "Negative prompt"),
                             ("neg2", "blurry, low quality, subtitles, watermark", "Negative prompt 2"),
                             ("empty", "", "Empty prompt (unconditional)")])
    k, kl = ksampler("NegGuidePerpNegSampler", [SAMPLER_X, 20],
                     {"cfg": 6.0, "neg_weight": 1.0, "seed": 42, "control_after_generate": "fixed", "steps": 30,
                      "sampler_name": "uni_pc", "scheduler": "simple"}, "shift", "pos", "empty", "latent")
    d, dl = decode("vae", "SaveAnimatedWEBP", {"filename_prefix": "NegGuide_Wan_PerpNeg", "fps": 16.0})
    nodes = {**note(text), "unet": ("UNETLoader", [20, 300], {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
                                                              "weight_dtype": "default"}, None),
             "clip": ("CLIPLoader", [20, 450], {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}, None),
             "vae": ("VAELoader", [20, 620], {"vae_name": "wan_2.1_vae.safetensors"}, None),
             "shift": ("ModelSamplingSD3", [20, 740], {"shift": 8.0}, None), **p,
             "latent": ("EmptyHunyuanLatentVideo", [PROMPT_X, 780], {"width": 832, "height": 480, "length": 33,
                                                                     "batch_size": 1}, None),
             "add": ("NegGuideAddNegative", [SAMPLER_X, 700], {"weight": 1.0}, None), **k, **d}
    return nodes, pl + kl + dl + [("unet", "MODEL", "shift", "model"), ("neg2", 0, "add", "conditioning"),
                                  ("add", 0, "ks", "more_negatives")]


def sd35():
    text = ("DNG on SD3.5 (NegGuide). First pick your checkpoint in Load Checkpoint (sd3.5_medium or sd3.5_large) and "
            "the three text encoders in TripleCLIPLoader (clip_g, clip_l, t5xxl). Two images of a dog in a park; "
            "'a golden retriever' is pushed away only from the image whose tracked probability p of turning into "
            "one rises (plot: p and lambda per step). lambda0, tau and delta are the paper's SD values; nothing "
            "tunes them for SD3.5 yet, so compare with lambda0 0 (= plain CFG).")
    p, pl = prompts("clip", [("pos", "a photo of a dog playing in a park", "Positive prompt"),
                             ("neg", "a golden retriever", "Unwanted concept"),
                             ("empty", "", "Empty prompt (unconditional)")])
    k, kl = ksampler("NegGuideDNGSampler", [SAMPLER_X, 20],
                     {"cfg": 4.5, "lambda0": 15.0, "seed": 42, "control_after_generate": "fixed", "steps": 28,
                      "sampler_name": "dpmpp_2m_sde", "scheduler": "sgm_uniform"}, "ckpt", "pos", "empty", "latent",
                     negative=("neg", "unwanted"))
    d, dl = decode("ckpt", "SaveImage", {"filename_prefix": "NegGuide_SD35_DNG"})
    d = {k: (t, [OUT_X + 70, y], *rest) for k, (t, [_, y], *rest) in d.items()}  # the DNG sampler is wider
    nodes = {**note(text), "ckpt": ("CheckpointLoaderSimple", [20, 300], {"ckpt_name": "sd3.5_medium.safetensors"}, None),
             "clip": ("TripleCLIPLoader", [20, 450], {"clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors",
                                                     "clip_name3": "t5xxl_fp16.safetensors"}, None), **p,
             "latent": ("EmptySD3LatentImage", [PROMPT_X, 590], {"width": 1024, "height": 1024, "batch_size": 2}, None),
             **k, **d, "plot": ("PreviewImage", [OUT_X + 70, 480], {}, "p and lambda per step")}
    return nodes, pl + kl + dl + [("ks", 1, "plot", "images")]


WORKFLOWS = {
    "SDXL Perp-Neg KSampler": sdxl,
    "Flux dev negative prompt at cfg 1": flux,
    "Wan 2.1 text to video with Perp-Neg": wan,
    "SD3.5 DNG dynamic negative": sd35,
}


def main():
    mw.main({name: make() for name, make in WORKFLOWS.items()}, SIZES, __doc__)

if __name__ == "__main__":
    main()
