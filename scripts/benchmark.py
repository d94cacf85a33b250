"""Per-step time of NegGuide's guiders against core CFGGuider and core PerpNegGuider, side by side in one run.

    python scripts/benchmark.py [--ckpt PATH] [--size 512] [--steps 8] [--rounds 5] [--device cpu|cuda]

Without --ckpt it builds the random-weight SD1.5-layout checkpoint of lab/tiny_sd15.py (one-level UNet, full CLIP/VAE), so the
numbers measure guidance overhead on a small UNet; pass a real checkpoint for real-model timings. Each round runs
every guider once (interleaved, so drift hits all alike); the table shows the median seconds per step and ratios.
Needs a ComfyUI checkout at COMFYUI_PATH or ~/ComfyUI.
"""
import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lab"))  # comfy_host + tiny_sd15 (dev tools, not shipped); never the repo root


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", help="checkpoint path (default: build the tiny random SD1.5-layout one)")
    ap.add_argument("--size", type=int, default=512, help="image size in pixels (latent is size/8)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--extra", default="", help="comma list of extra guiders to time: dng")
    opts = ap.parse_args()
    os.environ["NEGGUIDE_DEVICE"] = opts.device
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="negguide-bench-"))

    import comfy_host
    nodes, _, pack = comfy_host.boot(tmp)
    import comfy.model_management
    import comfy.samplers
    import comfy.sd
    import torch
    from comfy_extras.nodes_perpneg import Guider_PerpNeg

    ckpt = opts.ckpt
    if not ckpt:
        from tiny_sd15 import build
        ckpt = build(tmp / "tiny.safetensors")
    model, clip, _vae = comfy.sd.load_checkpoint_guess_config(str(ckpt))[:3]
    encode = lambda text: nodes.CLIPTextEncode().encode(clip, text)[0]  # noqa: E731
    pos, empty, neg1, neg2 = (encode(t) for t in ("a red fox in the snow", "", "front view", "blurry"))
    perp, chain, dng = pack.nodes.perp_neg, pack.nodes.add_negative.chain, pack.nodes.dng

    def core_cfg():
        g = comfy.samplers.CFGGuider(model)
        g.set_conds(pos, empty)
        g.set_cfg(7.5)
        return g

    def core_perpneg():
        g = Guider_PerpNeg(model)
        g.set_conds(pos, neg1, empty)
        g.set_cfg(7.5, 1.5)
        return g

    def ours(k, end=1.0):
        more = chain(None, neg2, 1.0) if k > 1 else None
        return lambda: perp.build_guider(model, pos, empty, 7.5, negative=neg1, neg_weight=1.5, more_negatives=more,
                                         negative_end=end)

    def dng_guider(perpendicular, end=1.0, **options):  # the paper's SD defaults
        return lambda: dng.build_guider(model, pos, empty, neg1, 7.5, 15.0, 0.01, 0.25, 0.003, 1e-6, 0.99, perpendicular,
                                        negative_end=end, **options)

    guiders = {"core CFGGuider": core_cfg, "core PerpNegGuider (k=1)": core_perpneg,
               "NegGuide Perp-Neg k=1": ours(1), "NegGuide Perp-Neg k=2": ours(2),
               "NegGuide Perp-Neg k=1, negative on first 40%": ours(1, 0.4)}
    if "dng" in opts.extra.split(","):
        # euler is deterministic, so DNG's default correction ("auto") is on: time both settings side by side
        guiders.update({"NegGuide DNG, correction off": dng_guider(False, correction="off"),
                        "NegGuide DNG, correction on": dng_guider(False, correction="on"),
                        "NegGuide DNG perp, correction off": dng_guider(True, correction="off"),
                        "NegGuide DNG, negative on first 40%, correction off": dng_guider(False, 0.4, correction="off")})

    shape = (opts.batch, 4, opts.size // 8, opts.size // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", opts.steps)
    sampler = comfy.samplers.sampler_object("euler")
    times = {name: [] for name in guiders}
    for r in range(opts.rounds + 1):  # round 0 warms up (model load, kernels)
        for name, make in guiders.items():
            guider = make()
            sync = torch.cuda.synchronize if torch.cuda.is_available() and opts.device != "cpu" else (lambda: None)
            sync()
            t0 = time.perf_counter()
            guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, disable_pbar=True, seed=0)
            sync()
            if r:
                times[name].append((time.perf_counter() - t0) / opts.steps)
    dev = comfy.model_management.get_torch_device_name(comfy.model_management.get_torch_device())
    print(f"device: {dev}; checkpoint: {pathlib.Path(ckpt).name}; latent {tuple(shape)}; {opts.steps} steps x {opts.rounds} rounds")
    base = statistics.median(times["core CFGGuider"])
    core = statistics.median(times["core PerpNegGuider (k=1)"])
    print("| guider | s/step (median) | vs core CFGGuider | vs core PerpNegGuider |\n|---|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.4f} | {m / base:.3f} | {m / core:.3f} |")


if __name__ == "__main__":
    main()
