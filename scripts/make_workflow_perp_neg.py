"""Dev script: builds the two Perp-Neg templates in the real ComfyUI frontend and saves what it serialises.

    python scripts/make_workflow_perp_neg.py [--url http://127.0.0.1:8188]

With --url it uses a running ComfyUI that has NegGuide installed; without, it starts one from $COMFYUI_PATH (else
~/ComfyUI) in a temp directory (scripts/comfy_frontend.py). Needs playwright and a system Chromium. Writes
example_workflows/<NAME>.json for each name below; scripts/make_thumbnails.py then draws their thumbnails.
"""
import argparse
import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("comfy_frontend", ROOT / "scripts" / "comfy_frontend.py")
cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cf)

CKPT = "v1-5-pruned-emaonly.safetensors"  # SD1.5's usual file name; the note tells users to pick theirs
POSITIVE = "a photo of a red fox in the snow, side view"
NOTE = ("Perp-Neg (NegGuide). First pick your checkpoint in Load Checkpoint (an SD1.5 model such as "
        "v1-5-pruned-emaonly; SDXL works too at 1024 px). Queue and look at the fox: \"front view\" and \"back view\" "
        "are removed only where they are perpendicular to the prompt, so the side view stays and the fox is not "
        "cancelled. Set neg_weight to 0 for plain CFG to compare. Right-click the GUIDE_NODE > \"Add negative "
        "(NegGuide)\" for one more weighted negative.")
# Nodes: key -> (type, [x, y], widget values by name, title). Links: (from, output, to, input).
PROMPTS = {
    "ckpt": ("CheckpointLoaderSimple", [20, 290], {"ckpt_name": CKPT}, None),
    "pos": ("CLIPTextEncode", [440, 20], {"text": POSITIVE}, "Positive prompt"),
    "neg": ("CLIPTextEncode", [440, 210], {"text": "front view"}, "Negative prompt"),
    "empty": ("CLIPTextEncode", [440, 590], {"text": ""}, "Empty prompt (unconditional)"),
    "latent": ("EmptyLatentImage", [440, 780], {"width": 512, "height": 512, "batch_size": 1}, None),
    "note": ("Note", [20, 20], {"text": NOTE.replace("GUIDE_NODE", "guider")}, "About this workflow"),
}
PROMPT_LINKS = [
    ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"), ("ckpt", "CLIP", "empty", "clip"),
    ("ckpt", "VAE", "decode", "vae"), ("decode", "IMAGE", "save", "images"),
]
GUIDER = {
    **PROMPTS,
    "neg2": ("CLIPTextEncode", [440, 400], {"text": "back view"}, "Negative prompt 2"),
    "guider": ("NegGuidePerpNegGuider", [900, 20],
               {"cfg": 7.5, "neg_weight": 1.5, "score_clip_start": 0.0, "score_clip_end": 0.0}, None),
    "add": ("NegGuideAddNegative", [900, 300], {"weight": 1.0}, None),
    "noise": ("RandomNoise", [1240, 20], {"noise_seed": 42, "control_after_generate": "fixed"}, None),
    "sampler": ("KSamplerSelect", [1240, 160], {"sampler_name": "euler"}, None),
    "sigmas": ("BasicScheduler", [1240, 260], {"scheduler": "normal", "steps": 20, "denoise": 1.0}, None),
    "run": ("SamplerCustomAdvanced", [1240, 420], {}, None),
    "decode": ("VAEDecode", [1480, 420], {}, None),
    "save": ("SaveImage", [1240, 580], {"filename_prefix": "NegGuide_PerpNeg"}, None),
}
GUIDER_LINKS = PROMPT_LINKS + [
    ("ckpt", "MODEL", "guider", "model"), ("pos", 0, "guider", "positive"), ("neg", 0, "guider", "negative"),
    ("empty", 0, "guider", "empty_conditioning"), ("ckpt", "CLIP", "neg2", "clip"), ("neg2", 0, "add", "conditioning"),
    ("add", 0, "guider", "more_negatives"), ("ckpt", "MODEL", "sigmas", "model"),
    ("noise", 0, "run", "noise"), ("guider", 0, "run", "guider"), ("sampler", 0, "run", "sampler"),
    ("sigmas", 0, "run", "sigmas"), ("latent", 0, "run", "latent_image"), ("run", 0, "decode", "samples"),
]
KSAMPLER = {
    **PROMPTS,
    "ks": ("NegGuidePerpNegSampler", [900, 20],
           {"cfg": 7.5, "neg_weight": 1.5, "seed": 42, "control_after_generate": "fixed", "steps": 20,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "score_clip_start": 0.0, "score_clip_end": 0.0}, None),
    "decode": ("VAEDecode", [1240, 20], {}, None),
    "save": ("SaveImage", [1240, 120], {"filename_prefix": "NegGuide_PerpNeg"}, None),
    "note": ("Note", [20, 20], {"text": NOTE.replace("GUIDE_NODE", "sampler")}, "About this workflow"),
    "empty": ("CLIPTextEncode", [440, 400], {"text": ""}, "Empty prompt (unconditional)"),
    "latent": ("EmptyLatentImage", [440, 590], {"width": 512, "height": 512, "batch_size": 1}, None),
}
KSAMPLER_LINKS = PROMPT_LINKS + [
    ("ckpt", "MODEL", "ks", "model"), ("pos", 0, "ks", "positive"), ("neg", 0, "ks", "negative"),
    ("empty", 0, "ks", "empty_conditioning"), ("latent", 0, "ks", "latent_image"), ("ks", 0, "decode", "samples"),
]
SIZES = {"CLIPTextEncode": [400, 150], "Note": [400, 210], "SaveImage": [400, 320]}  # others: their own size

WORKFLOWS = {
    "Perp-Neg guider with two negatives": (GUIDER, GUIDER_LINKS),
    "Perp-Neg KSampler": (KSAMPLER, KSAMPLER_LINKS),
}


def sized(nodes: dict, sizes: dict) -> dict:
    """Each node keeps the size it names, else gets its type's size from `sizes` (else its own default size)."""
    return {key: value if len(value) > 4 else (*value, sizes.get(value[0])) for key, value in nodes.items()}


def write(out_dir: pathlib.Path, name: str, workflow: dict, errors: list):
    if errors:
        raise RuntimeError(f"{name}: the frontend reported {errors}")
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(workflow, indent=2) + "\n")
    print(f"wrote {path}: {len(workflow['nodes'])} nodes, {len(workflow['links'])} links")


def main(workflows: dict = WORKFLOWS, sizes: dict = SIZES, description: str = __doc__):
    """Builds each workflow (name -> (nodes, links)) in the frontend and writes it; the other template scripts'
    main too."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with NegGuide installed (default: start one)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "example_workflows")
    args = parser.parse_args()
    with cf.comfyui(args.url) as url, cf.frontend(url) as (page, errors):
        for name, (nodes, links) in workflows.items():
            write(args.out, name, cf.build(page, sized(nodes, sizes), links), errors)


if __name__ == "__main__":
    main()
