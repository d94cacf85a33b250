"""Janus-rate study for Distill 3D (docs/3d.md): renders turntable grids to rate by eye, then scores the ratings.

    python scripts/janus_study.py render --ckpt PATH [--bert FOLDER] [--seeds 4] [--steps 2000] [--out DIR]
    python scripts/janus_study.py score DIR/ratings.csv

render: for every prompt (default: objects with one countable face), seed 0..K-1 and condition
    plain      SDS with view-dependent prompts only (Perp-Neg weight scale 0, no clipping)
    perpneg    + Perp-Neg view negatives
    clip       + D-SDS score clipping of the residual (2 -> 8)
    debias     + prompt debiasing (needs --bert, a BERT uncased folder; skipped without one)
it distills a field with the same seed, renders 8 turntable views through the VAE into DIR/<prompt>/<condition>_seed<k>.png
and writes DIR/ratings.csv with an empty "janus" column: rate each grid WITHOUT looking at its condition (the file
lists the images shuffled), 1 = more faces than the object has (Janus), 0 = consistent, blank = unusable.
score: success rate (janus = 0) per condition with 95% Wilson intervals, and per condition against plain the pairs
(same prompt, same seed) where only one of the two succeeded.

Boots ComfyUI from COMFYUI_PATH or ~/ComfyUI like scripts/benchmark.py; --help and score need no ComfyUI.
"""
import argparse
import csv
import math
import os
import pathlib
import random
import re
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PROMPTS = ("a DSLR photo of a corgi puppy", "a zoomed out photo of a small lion", "a bust of a pharaoh",
           "a DSLR photo of a panda", "a DSLR photo of an owl", "a plush teddy bear")
CONDITIONS = {  # cumulative, as in the D-SDS ablation
    "plain": dict(weight_scale=0.0, psi_start=0.0, psi_end=0.0),
    "perpneg": dict(weight_scale=1.0, psi_start=0.0, psi_end=0.0),
    "clip": dict(weight_scale=1.0, psi_start=2.0, psi_end=8.0),
    "debias": dict(weight_scale=1.0, psi_start=2.0, psi_end=8.0),
}


def wilson(successes: int, n: int, z: float = 1.96):
    """95% Wilson score interval of a binomial proportion (Wilson 1927); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def score(path: pathlib.Path):
    rows = [r for r in csv.DictReader(path.open()) if r["janus"].strip() in ("0", "1")]
    ok = {(r["prompt"], r["condition"], r["seed"]): r["janus"].strip() == "0" for r in rows}
    print(f"{'condition':<10} {'success':>8} {'n':>4}  95% Wilson     vs plain: only this / only plain (paired)")
    for cond in CONDITIONS:
        mine = {k: v for k, v in ok.items() if k[1] == cond}
        if not mine:
            continue
        s, n = sum(mine.values()), len(mine)
        lo, hi = wilson(s, n)
        pairs = [(v, ok[(p, "plain", seed)]) for (p, _, seed), v in mine.items() if (p, "plain", seed) in ok]
        better, worse = sum(a and not b for a, b in pairs), sum(b and not a for a, b in pairs)
        paired = "" if cond == "plain" else f"{better} / {worse} of {len(pairs)} pairs"
        print(f"{cond:<10} {s / n:>8.2f} {n:>4}  [{lo:.2f}, {hi:.2f}]   {paired}")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48]


def debiaser(pack, folder):
    """prompt -> view prompts, with the pack's prompt debiasing (Hong et al. 2023, sec. 4.2)."""
    views, debias = pack.guiders.views.VIEWS, pack.guiders.debias
    tokenizer, model = pack.support.hf.load_masked_lm(folder, "--bert")
    scorer = debias.masked_lm_scorer(tokenizer, model, views)
    return lambda prompt: debias.debias_prompt(prompt, scorer, views)[0]


def render(opts):
    os.environ["NEGGUIDE_DEVICE"] = opts.device
    sys.path.insert(0, str(HERE.parent / "lab"))  # comfy_host (dev tools, not shipped); never the repo root
    import transformers.utils.import_utils  # noqa: F401 - sees the real torchvision (or none) before boot may add lab's stand-in
    import comfy_host
    _, _, pack = comfy_host.boot(pathlib.Path(tempfile.mkdtemp(prefix="negguide-janus-")))
    import comfy.sd
    from PIL import Image

    d3 = pack.nodes.distill3d
    model, clip, vae = comfy.sd.load_checkpoint_guess_config(opts.ckpt)[:3]
    debias = debiaser(pack, opts.bert) if opts.bert else None
    conditions = [c for c in CONDITIONS if c != "debias" or debias]
    if not debias:
        print("no --bert folder: the debias condition is skipped")
    prompts = [p.strip() for p in opts.prompts.read_text().splitlines() if p.strip()] if opts.prompts else PROMPTS
    out, rows = pathlib.Path(opts.out), []
    for prompt in prompts:
        view_prompts = debias(prompt) if debias else None
        for seed in range(opts.seeds):
            for cond in conditions:
                f3d, info = d3.distill(model, clip, prompt, opts.steps, opts.cfg, "threestudio", opts.front_range, 45.0,
                                       seed=seed, weighting="sjc", grid=opts.grid, render_size=opts.render_size,
                                       lr=0.05, emptiness_weight=10000.0, preview_every=0,
                                       view_prompts=view_prompts if cond == "debias" else None, **CONDITIONS[cond])
                images = d3.RenderTurntable.execute(f3d, vae, 8, 15.0, 0).args[0]
                grid = d3.image_row(images)[0]
                path = out / slug(prompt) / f"{cond}_seed{seed}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray((grid.clamp(0, 1) * 255).byte().cpu().numpy()).save(path)
                rows.append({"image": str(path.relative_to(out)), "prompt": prompt, "condition": cond, "seed": seed, "janus": ""})
                print(path, info.splitlines()[-1])
    random.Random(0).shuffle(rows)  # rate blind: the order says nothing about the condition
    with (out / "ratings.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "janus", "prompt", "condition", "seed"])
        w.writeheader()
        w.writerows(rows)
    print(f"rate {out / 'ratings.csv'} (janus: 1 = extra faces, 0 = consistent), then: {sys.argv[0]} score it")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="distill and render the turntable grids")
    r.add_argument("--ckpt", required=True, help="checkpoint path (SD1.5-family at 64x64 latent renders)")
    r.add_argument("--bert", help="a BERT uncased folder for the debias condition")
    r.add_argument("--prompts", type=pathlib.Path, help="text file, one prompt per line (default: six face-bearing objects)")
    r.add_argument("--seeds", type=int, default=4, help="K seeds per prompt and condition (paired across conditions)")
    r.add_argument("--steps", type=int, default=2000)
    r.add_argument("--cfg", type=float, default=100.0)
    r.add_argument("--grid", type=int, default=64)
    r.add_argument("--render-size", type=int, default=64, help="latent pixels")
    r.add_argument("--front-range", type=float, default=45.0, help="22.5 = D-SDS's front view")
    r.add_argument("--device", default="cuda", help="cuda or cpu")
    r.add_argument("--out", default="janus_study")
    s = sub.add_parser("score", help="success rates with Wilson intervals from a rated ratings.csv")
    s.add_argument("ratings", type=pathlib.Path)
    opts = ap.parse_args()
    render(opts) if opts.command == "render" else score(opts.ratings)


if __name__ == "__main__":
    main()
