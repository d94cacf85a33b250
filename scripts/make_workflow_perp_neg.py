"""Dev script: builds the shipped Perp-Neg workflows in the real ComfyUI frontend and saves what it serialises.

    python scripts/make_workflow_perp_neg.py [--url http://127.0.0.1:8188]

With --url it uses a running ComfyUI that has NegGuide installed; without, it starts one the way the host
tests do (tests/host/_server.py: temp base directory, tiny random checkpoint). Needs playwright and the system
Chromium. Writes workflows/negguide_perp_neg.json and workflows/negguide_perp_neg_ksampler.json.
"""
import argparse
import io
import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))  # the test helpers only, never the repo root

import _server  # noqa: E402
from PIL import Image  # noqa: E402

CKPT = _server.CKPT
POSITIVE = "a photo of a red fox in the snow, side view"
NOTE = ("Perp-Neg (NegGuide): each negative removes only its part perpendicular to the positive prompt, so a "
        "negative like \"front view\" cannot cancel the subject. Right-click the guider > \"Add negative (NegGuide)\" "
        "to chain one more weighted negative.")

# Nodes: key -> (type, [x, y], widget values by name, title). Links: (from, output, to, input).
PROMPTS = {
    "ckpt": ("CheckpointLoaderSimple", [20, 240], {"ckpt_name": CKPT}, None),
    "pos": ("CLIPTextEncode", [440, 20], {"text": POSITIVE}, "Positive prompt"),
    "neg": ("CLIPTextEncode", [440, 210], {"text": "front view"}, "Negative prompt"),
    "empty": ("CLIPTextEncode", [440, 590], {"text": ""}, "Empty prompt (unconditional)"),
    "latent": ("EmptyLatentImage", [440, 780], {"width": 512, "height": 512, "batch_size": 1}, None),
    "note": ("Note", [20, 20], {"text": NOTE}, "About this workflow"),
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
    "note": ("Note", [20, 20], {"text": NOTE.replace("the guider", "the sampler")}, "About this workflow"),
    "empty": ("CLIPTextEncode", [440, 400], {"text": ""}, "Empty prompt (unconditional)"),
    "latent": ("EmptyLatentImage", [440, 590], {"width": 512, "height": 512, "batch_size": 1}, None),
}
KSAMPLER_LINKS = PROMPT_LINKS + [
    ("ckpt", "MODEL", "ks", "model"), ("pos", 0, "ks", "positive"), ("neg", 0, "ks", "negative"),
    ("empty", 0, "ks", "empty_conditioning"), ("latent", 0, "ks", "latent_image"), ("ks", 0, "decode", "samples"),
]
SIZES = {"CLIPTextEncode": [400, 150], "Note": [400, 180], "SaveImage": [400, 320]}  # others: their own size

BUILD_JS = """(spec) => {
  const graph = app.graph;
  graph.clear();
  const made = {};
  for (const [key, type, pos, widgets, title] of spec.nodes) {
    const node = LiteGraph.createNode(type);
    if (!node) throw new Error(`unknown node type ${type}`);
    if (title) node.title = title;
    node.pos = pos;
    graph.add(node);
    for (const [name, value] of Object.entries(widgets)) {
      const widget = node.widgets?.find((w) => w.name === name);
      if (!widget) throw new Error(`${type} has no widget ${name}`);
      widget.value = value;
    }
    if (spec.sizes[type]) node.setSize(spec.sizes[type]);
    made[key] = node;
  }
  for (const [src, out, dst, input] of spec.links) {
    const a = made[src], b = made[dst];
    const o = typeof out === "number" ? out : a.outputs.findIndex((s) => s.type === out);
    const i = b.findInputSlot(input);
    if (o < 0 || i < 0 || !a.connect(o, b, i)) throw new Error(`cannot link ${src}.${out} -> ${dst}.${input}`);
  }
  // Saved view: the whole graph fitted to the canvas, so the workflow opens with everything in sight.
  const title = LiteGraph.NODE_TITLE_HEIGHT, margin = 40;
  const x0 = Math.min(...graph.nodes.map((n) => n.pos[0])) - margin;
  const y0 = Math.min(...graph.nodes.map((n) => n.pos[1] - title)) - margin;
  const x1 = Math.max(...graph.nodes.map((n) => n.pos[0] + n.size[0])) + margin;
  const y1 = Math.max(...graph.nodes.map((n) => n.pos[1] + n.size[1])) + margin;
  const rect = app.canvas.canvas.getBoundingClientRect();
  const scale = Math.min(1, rect.width / (x1 - x0), rect.height / (y1 - y0));
  app.canvas.ds.scale = scale;  // serialize() saves the canvas view as extra.ds
  app.canvas.ds.offset = [(rect.width / scale - (x1 - x0)) / 2 - x0, (rect.height / scale - (y1 - y0)) / 2 - y0];
  return JSON.parse(JSON.stringify(graph.serialize()));
}"""

SHOWN = "negguide_perp_neg.json"
WORKFLOWS = {
    "negguide_perp_neg.json": (GUIDER, GUIDER_LINKS),
    "negguide_perp_neg_ksampler.json": (KSAMPLER, KSAMPLER_LINKS),
}


def build(page, nodes, links) -> dict:
    spec = {"nodes": [[key, *value] for key, value in nodes.items()], "links": links, "sizes": SIZES}
    return page.evaluate(BUILD_JS, spec)


def make_all(server, out_dir: pathlib.Path, screenshot: pathlib.Path):
    with _server.frontend(server, pixel_ratio=1.5) as (page, errors):
        for name, (nodes, links) in WORKFLOWS.items():
            workflow = build(page, nodes, links)
            if errors:
                raise RuntimeError(f"{name}: the frontend reported {errors}")
            (out_dir / name).write_text(json.dumps(workflow, indent=2) + "\n")
            print(f"wrote {out_dir / name}: {len(workflow['nodes'])} nodes, {len(workflow['links'])} links")
        for name in WORKFLOWS:  # open each saved file the way a user does, for the pictures
            page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }",
                          [json.loads((out_dir / name).read_text()), name.removesuffix(".json")])
            page.wait_for_timeout(500)
            thumbnail = out_dir / name.replace(".json", ".jpg")  # the template browser shows <name>.jpg
            canvas = page.evaluate("() => { const r = app.canvas.canvas.getBoundingClientRect(); "
                                   "return {x: r.left, y: r.top, width: r.width, height: r.height}; }")
            image = Image.open(io.BytesIO(page.screenshot(clip=canvas))).convert("RGB")
            image.thumbnail((640, 640))
            image.save(thumbnail, quality=80)
            print(f"wrote {thumbnail}")
            if name == SHOWN:  # the README picture
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
                print(f"wrote {screenshot}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with NegGuide installed (default: start one)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "workflows")
    parser.add_argument("--screenshot", type=pathlib.Path, default=ROOT / "docs" / "img" / "perp_neg_workflow.png")
    args = parser.parse_args()
    if args.url:
        server = _server.ComfyServer(pathlib.Path(tempfile.mkdtemp()))
        server.url = args.url.rstrip("/")
        make_all(server, args.out, args.screenshot)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = _server.launch(pathlib.Path(tmp))
        try:
            make_all(server, args.out, args.screenshot)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
