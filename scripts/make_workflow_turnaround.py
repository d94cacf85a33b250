"""Dev script: builds the turnaround template in the real ComfyUI frontend (like make_workflow_perp_neg.py).

    python scripts/make_workflow_turnaround.py [--url http://127.0.0.1:8188]

Four views of one object in one batch: one prompt box -> (optional) Debias View Prompts -> View Conditioning ->
Perp-Neg guider -> SamplerCustomAdvanced -> one grid image; the latent batch size comes from the view node.
"""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_workflow_perp_neg", ROOT / "scripts" / "make_workflow_perp_neg.py")
_pn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pn)
cf = _pn.cf

NAME = "Turnaround four views in one batch"
PROMPT = "a smiling corgi wearing a red hat"
NOTE = ("Turnaround (NegGuide). First pick your checkpoint in Load Checkpoint (SD1.5 at 512 px, or SDXL at 1024). "
        "Write the object once, without view words, in the Prompt box: both nodes read it. View Conditioning makes one "
        "image per azimuth (drag the dots on its dial), blends front/side/back prompts and pushes each image away from "
        "the other views with Perp-Neg. Look at the grid: the back view should show the back of the corgi, not a "
        "second face. Debias View Prompts drops words that work against a view ('smiling' from the back view) and needs "
        "a BERT uncased folder in ComfyUI/models/bert (e.g. bert-base-uncased). Without one, delete that node: its "
        "report preview goes with it and the views use the Prompt box as is.")
PREVIEW = [500, 250]  # text previews big enough to read
NODES = {
    "note": ("Note", [20, 20], {"text": NOTE}, "About this workflow", [400, 300]),
    "ckpt": ("CheckpointLoaderSimple", [20, 370], {"ckpt_name": _pn.CKPT}, None),
    "prompt": ("PrimitiveStringMultiline", [20, 500], {"value": PROMPT}, "Prompt (the object, no view words)", [400, 130]),
    "debias": ("NegGuideDebiasViewPrompts", [20, 680],
               {"prompt": PROMPT, "bert_model": "bert-base-uncased", "protected_words": "corgi", "threshold": 0.95},
               "Debias View Prompts (optional: needs BERT)", [400, 150]),
    "report": ("PreviewAny", [20, 920], {}, "Debias report", [400, 180]),
    "views": ("NegGuideViewConditioning", [460, 20],
              {"prompt": PROMPT, "azimuths": "0, 90, 180, 270", "views": 0, "elevation": 0.0,
               "schedule": "threestudio", "front_range": 45.0, "back_range": 45.0, "overhead_threshold": 60.0,
               "weight_scale": 1.0}, None, [500, 760]),
    "info": ("PreviewAny", [460, 820], {}, "Views: prompts and weights", PREVIEW),
    "noise": ("RandomNoise", [1000, 20], {"noise_seed": 42, "control_after_generate": "fixed"}, None),
    "sampler": ("KSamplerSelect", [1000, 160], {"sampler_name": "dpmpp_2m"}, None),
    "guider": ("NegGuidePerpNegGuider", [1000, 270],
               {"cfg": 7.5, "neg_weight": 1.5, "score_clip_start": 0.0, "score_clip_end": 0.0}, None),
    "latent": ("EmptyLatentImage", [1000, 560], {"width": 512, "height": 512, "batch_size": 4}, None),
    "sigmas": ("BasicScheduler", [1000, 740], {"scheduler": "karras", "steps": 25, "denoise": 1.0}, None),
    "run": ("SamplerCustomAdvanced", [1330, 20], {}, None),
    "decode": ("VAEDecode", [1330, 200], {}, None),
    "grid": ("NegGuideImageGrid", [1330, 300], {"columns": 0}, None),
    "save": ("SaveImage", [1330, 430], {"filename_prefix": "NegGuide_turnaround"}, None, [400, 400]),
}
LINKS = [
    ("prompt", 0, "debias", "prompt"), ("prompt", 0, "views", "prompt"),
    ("ckpt", "CLIP", "views", "clip"), ("debias", 0, "views", "view_prompts"), ("debias", 1, "report", "source"),
    ("views", 4, "info", "source"), ("views", 3, "latent", "batch_size"),
    ("ckpt", "MODEL", "guider", "model"), ("views", 0, "guider", "positive"), ("views", 1, "guider", "empty_conditioning"),
    ("views", 2, "guider", "more_negatives"), ("ckpt", "MODEL", "sigmas", "model"),
    ("noise", 0, "run", "noise"), ("guider", 0, "run", "guider"), ("sampler", 0, "run", "sampler"),
    ("sigmas", 0, "run", "sigmas"), ("latent", 0, "run", "latent_image"), ("run", 0, "decode", "samples"),
    ("ckpt", "VAE", "decode", "vae"), ("decode", "IMAGE", "grid", "images"), ("grid", "IMAGE", "save", "images"),
]


def main():
    _pn.main({NAME: (NODES, LINKS)}, {}, __doc__)  # each node names its size or keeps its own

if __name__ == "__main__":
    main()
