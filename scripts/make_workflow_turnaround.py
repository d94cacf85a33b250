"""Dev script: builds workflows/negguide_turnaround.json in the real ComfyUI frontend (like make_workflow_perp_neg.py).

    python scripts/make_workflow_turnaround.py [--url http://127.0.0.1:8188]

Four views of one object in one batch: debiased view prompts -> View Conditioning -> Perp-Neg guider ->
SamplerCustomAdvanced -> a grid image; the latent batch size comes from the view node.
"""
import argparse
import importlib.util
import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))  # the test helpers only, never the repo root

import _server  # noqa: E402

_spec = importlib.util.spec_from_file_location("make_workflow_perp_neg", ROOT / "scripts" / "make_workflow_perp_neg.py")
_pn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pn)

PROMPT = "a smiling corgi wearing a red hat"
NOTE = ("Turnaround (NegGuide): one image per azimuth in 'View Conditioning'. Each view blends the front/side/back "
        "prompts and pushes away from the other views with Perp-Neg; the empty latent's batch size comes from the view "
        "node. 'Debias View Prompts' drops words that work against a view (e.g. 'smiling' from the back view); it "
        "needs a BERT uncased folder in ComfyUI/models/bert (e.g. bert-base-uncased). Without one, delete that node: "
        "the view node then uses its own prompt.")
NODES = {
    "note": ("Note", [20, 20], {"text": NOTE}, "About this workflow"),
    "ckpt": ("CheckpointLoaderSimple", [20, 260], {"ckpt_name": _server.CKPT}, None),
    "debias": ("NegGuideDebiasViewPrompts", [20, 420],
               {"prompt": PROMPT, "bert_model": "bert-base-uncased", "protected_words": "corgi", "threshold": 0.95}, None),
    "report": ("PreviewAny", [20, 720], {}, "Debias report"),
    "views": ("NegGuideViewConditioning", [460, 20],
              {"prompt": PROMPT, "azimuths": "0, 90, 180, 270", "views": 0, "elevation": 0.0,
               "schedule": "threestudio", "front_range": 45.0, "back_range": 45.0, "overhead_threshold": 60.0,
               "weight_scale": 1.0}, None),
    "info": ("PreviewAny", [460, 720], {}, "Views: prompts and weights"),
    "latent": ("EmptyLatentImage", [900, 560], {"width": 512, "height": 512, "batch_size": 4}, None),
    "guider": ("NegGuidePerpNegGuider", [900, 260],
               {"cfg": 7.5, "neg_weight": 1.5, "score_clip_start": 0.0, "score_clip_end": 0.0}, None),
    "noise": ("RandomNoise", [900, 20], {"noise_seed": 42, "control_after_generate": "fixed"}, None),
    "sampler": ("KSamplerSelect", [900, 140], {"sampler_name": "dpmpp_2m"}, None),
    "sigmas": ("BasicScheduler", [900, 720], {"scheduler": "karras", "steps": 25, "denoise": 1.0}, None),
    "run": ("SamplerCustomAdvanced", [1240, 20], {}, None),
    "decode": ("VAEDecode", [1240, 260], {}, None),
    "grid": ("NegGuideImageGrid", [1240, 360], {"columns": 0}, None),
    "save": ("SaveImage", [1560, 20], {"filename_prefix": "NegGuide_turnaround"}, None),
}
LINKS = [
    ("ckpt", "CLIP", "views", "clip"), ("debias", 0, "views", "view_prompts"), ("debias", 1, "report", "source"),
    ("views", 4, "info", "source"), ("views", 3, "latent", "batch_size"),
    ("ckpt", "MODEL", "guider", "model"), ("views", 0, "guider", "positive"), ("views", 1, "guider", "empty_conditioning"),
    ("views", 2, "guider", "more_negatives"), ("ckpt", "MODEL", "sigmas", "model"),
    ("noise", 0, "run", "noise"), ("guider", 0, "run", "guider"), ("sampler", 0, "run", "sampler"),
    ("sigmas", 0, "run", "sigmas"), ("latent", 0, "run", "latent_image"), ("run", 0, "decode", "samples"),
    ("ckpt", "VAE", "decode", "vae"), ("decode", "IMAGE", "grid", "images"), ("grid", "IMAGE", "save", "images"),
]
NAME = "negguide_turnaround.json"


def make(server, out_dir: pathlib.Path):
    with _server.frontend(server) as (page, errors):
        workflow = _pn.build(page, NODES, LINKS)
        if errors:
            raise RuntimeError(f"{NAME}: the frontend reported {errors}")
    (out_dir / NAME).write_text(json.dumps(workflow, indent=2) + "\n")
    print(f"wrote {out_dir / NAME}: {len(workflow['nodes'])} nodes, {len(workflow['links'])} links")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with NegGuide installed (default: start one)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "workflows")
    args = parser.parse_args()
    if args.url:
        server = _server.ComfyServer(pathlib.Path(tempfile.mkdtemp()))
        server.url = args.url.rstrip("/")
        make(server, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = _server.launch(pathlib.Path(tmp))
        try:
            make(server, args.out)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
