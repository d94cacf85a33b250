"""NegGuide's cost against core ComfyUI, side by side in one run on one model: one markdown table.

    python scripts/benchmark.py [--ckpt PATH] [--device cpu|cuda] [--size 512] [--batch 1] [--steps 8] [--rounds 5] [--quick]

Rows of the table:
- every guider (core CFGGuider and PerpNegGuider, NegGuide DNS, Perp-Neg, View Conditioning + Perp-Neg, DNG with and
  without its divergence correction, negative windows): model rows per step counted by a model_function_wrapper,
  median seconds per step (euler; rounds interleave the guiders, so drift hits all alike), ratios to core CFGGuider
  and core PerpNegGuider, the cost targets, guidance math and peak memory;
- guidance math: each guider's own predict_noise with the model call replaced by stored random predictions (what it
  computes per evaluation besides the model), per step, at the run's latent as a share of that guider's measured
  step, and in ms at [4, 4, 128, 128];
- peak memory: growth of allocated tensor memory during one sample (CUDA allocator peak; on the CPU the profiler's
  allocation events, since tracemalloc does not see torch and RSS is too coarse);
- captioner throughput (images/s, 1 vs 8 images per generate call) of a tiny random BLIP built from transformers
  configs, through the pack's captioner; auto-DNP (DNS pass, decode, caption, final pass) against one plain
  generation (core CFGGuider + decode) at the same steps and size.

Without --ckpt it builds the random-weight SD1.5-layout checkpoint of lab/tiny_sd15.py (one-level UNet, full CLIP and
VAE): its model step is much cheaper than a real UNet's, so guidance-math shares are upper bounds there. Needs a
ComfyUI checkout at COMFYUI_PATH or ~/ComfyUI; a script, not a test (no timed asserts).
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
MATH_SHAPE = (4, 4, 128, 128)
CFG, NEG_WEIGHT = 7.5, 1.5
CAPTION_IMAGES = 8
# NegGuide guider -> the core guider with the same model rows: it must cost at most TOLERANCE x that one
TARGETS = {"NegGuide DNS": "core CFGGuider", "NegGuide Perp-Neg k=1": "core PerpNegGuider (k=1)",
           "NegGuide DNG, correction off": "core PerpNegGuider (k=1)",
           "NegGuide DNG perp, correction off": "core PerpNegGuider (k=1)"}
TOLERANCE = 1.03


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", help="checkpoint path (default: build the tiny random SD1.5-layout one)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--size", type=int, help="image size in pixels, latent is size/8 (default 512; --quick: 64)")
    ap.add_argument("--batch", type=int, default=1, help="latent batch (1024 px x batch 4 = latent [4, 4, 128, 128])")
    ap.add_argument("--steps", type=int, help="euler steps (default 8; --quick: 2)")
    ap.add_argument("--rounds", type=int, help="timed rounds after one warm-up round (default 5; --quick: 1)")
    ap.add_argument("--caption-tokens", type=int, help="tokens per caption (default 30; --quick: 8)")
    ap.add_argument("--quick", action="store_true", help="smoke run: small defaults, numbers mean nothing")
    opts = ap.parse_args()
    for name, full, quick in (("size", 512, 64), ("steps", 8, 2), ("rounds", 5, 1), ("caption_tokens", 30, 8)):
        if getattr(opts, name) is None:
            setattr(opts, name, quick if opts.quick else full)
    return opts


def median_time(fn, rounds, sync):
    """Median seconds of fn over `rounds` calls after one warm-up call."""
    times = []
    for r in range(rounds + 1):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if r:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_bytes(fn, cuda: bool):
    """Peak growth of allocated tensor bytes while fn runs (None where it cannot be measured)."""
    import torch

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:  # the raw allocation and free events, in time order (the per-op table attributes bytes to ops)
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    except AttributeError:  # a torch whose profiler has no raw events
        return None
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def prime_torchvision_check():
    """lab/stubs stands in for torchvision in ComfyUI's imports where none is installed; transformers must not take
    it for the real one (its fast image processors would import it). Its check is cached, so ask it before the
    stand-in goes on sys.path: the answer is then the truth."""
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()


def tiny_blip(folder: pathlib.Path) -> str:
    """A tiny random BLIP captioner folder built from transformers configs (nothing downloaded). Special tokens are
    never emitted, so every caption is exactly max_new_tokens long and never empty: the work per image is fixed."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    vocab = "[PAD] [UNK] [CLS] [SEP] [MASK] [DEC] a red fox in the snow blurry photo of".split()
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = BlipConfig(vision_config=dict(small, image_size=32, patch_size=8), projection_dim=32,
                        text_config=dict(small, vocab_size=len(vocab), encoder_hidden_size=32, bos_token_id=5,
                                         sep_token_id=3, pad_token_id=0))
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[:6] = -1e4
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def math_runner(guider, shape, sigmas, run, device):
    """fn running the guider's predict_noise for every step of the schedule with the model call replaced by stored
    random predictions: the guidance arithmetic alone (NegGuide: conditions, probe, term, fold, CFG; core: its own)."""
    import comfy.samplers
    import torch

    gen = torch.Generator().manual_seed(1)
    steps = [(torch.randn(shape, generator=gen).to(device), s.to(device).expand(shape[0])) for s in sigmas[:-1]]
    preds = []

    def fake_calc_cond_batch(model, conds, x, timestep, model_options):
        """One stored prediction per batch position (content does not matter for timing; made in the warm-up)."""
        while len(preds) < len(conds):
            preds.append(torch.randn(shape, generator=gen).to(device))
        return preds[:len(conds)]

    options = {"transformer_options": {"sample_sigmas": sigmas.to(device)}}
    guider.inner_model, guider.conds = None, guider.original_conds  # what sample() sets; only hooks read the model
    technique = getattr(guider, "technique", None)

    def evaluate_schedule():
        real = comfy.samplers.calc_cond_batch
        comfy.samplers.calc_cond_batch = fake_calc_cond_batch
        try:
            if technique is not None:  # what NegGuide's Guider.sample does before sampling
                technique.reset(run)
            for x, sigma in steps:
                guider.predict_noise(x, sigma, model_options=options)
        finally:
            comfy.samplers.calc_cond_batch = real
    return evaluate_schedule


def guider_makers(pack, model, clip, batch):
    """name -> fn building a fresh guider from the pack's node code, as a graph run does."""
    import comfy.samplers
    from comfy_extras.nodes_perpneg import Guider_PerpNeg

    encode, nodes = pack.nodes._common.encode, pack.nodes
    pos, empty, neg1, neg2 = (encode(clip, t) for t in ("a red fox in the snow", "", "front view", "blurry"))
    vpos, vempty, vnegs = nodes.views.ViewConditioning.execute(  # a turnaround of `batch` views from 60 degrees
        clip, "a red fox", "60", batch, 0.0, "threestudio", 45.0, 45.0, 60.0, 1.0, *nodes.views.TEMPLATES.values()).args[:3]

    def core_cfg():
        g = comfy.samplers.CFGGuider(model)
        g.set_conds(pos, empty)
        g.set_cfg(CFG)
        return g

    def core_perpneg():
        g = Guider_PerpNeg(model)
        g.set_conds(pos, neg1, empty)
        g.set_cfg(CFG, NEG_WEIGHT)
        return g

    def perp_neg(k, end=1.0):
        more = nodes.add_negative.chain(None, neg2, 1.0) if k > 1 else None
        return lambda: nodes.perp_neg.build_guider(model, pos, empty, CFG, negative=neg1, neg_weight=NEG_WEIGHT,
                                                   more_negatives=more, negative_end=end)

    def dng(perpendicular, correction, end=1.0):  # the paper's SD defaults
        return lambda: nodes.dng.build_guider(model, pos, empty, neg1, CFG, 15.0, 0.01, 0.25, 0.003, 1e-6, 0.99,
                                              perpendicular, negative_end=end, correction=correction)

    return {"core CFGGuider": core_cfg, "core PerpNegGuider (k=1)": core_perpneg,
            "NegGuide DNS": lambda: nodes.dns.dns_guider(model, pos, empty, CFG),
            "NegGuide Perp-Neg k=1": perp_neg(1), "NegGuide Perp-Neg k=2": perp_neg(2),
            "NegGuide Perp-Neg k=1, negative on first 40%": perp_neg(1, 0.4),
            "NegGuide View Conditioning + Perp-Neg (2 view negatives)":
                lambda: nodes.perp_neg.build_guider(model, vpos, vempty, CFG, more_negatives=vnegs),
            # euler is deterministic, so DNG's default correction (auto) probes: time it against off
            "NegGuide DNG, correction off": dng(False, "off"), "NegGuide DNG, correction auto": dng(False, "auto"),
            "NegGuide DNG perp, correction off": dng(True, "off"),
            "NegGuide DNG, negative on first 40%, correction off": dng(False, "off", 0.4)}


def main():
    opts = parse()
    os.environ["NEGGUIDE_DEVICE"] = opts.device
    prime_torchvision_check()
    with tempfile.TemporaryDirectory(prefix="negguide-bench-") as tmp:  # the tiny checkpoint alone is ~450 MB
        suite(opts, pathlib.Path(tmp))


def suite(opts, tmp: pathlib.Path):
    import comfy_host
    _, _, pack = comfy_host.boot(tmp)
    import comfy.model_management as mm
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    import torch
    import transformers

    comfy.utils.PROGRESS_BAR_ENABLED = False  # keep the output to the table
    transformers.utils.logging.disable_progress_bar()

    cuda = opts.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    device = mm.get_torch_device()
    ckpt = opts.ckpt
    if not ckpt:
        from tiny_sd15 import build
        ckpt = build(tmp / "tiny.safetensors")
    model, clip, vae = comfy.sd.load_checkpoint_guess_config(str(ckpt))[:3]
    rows = [0]

    def counting(apply_model, args):  # every batch the model sees passes here: model rows per step
        rows[0] += args["input"].shape[0]
        return apply_model(args["input"], args["timestep"], **args["c"])
    model = model.clone()
    model.set_model_unet_function_wrapper(counting)

    guiders = guider_makers(pack, model, clip, opts.batch)
    shape = (opts.batch, 4, opts.size // 8, opts.size // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", opts.steps)
    sampler = comfy.samplers.sampler_object("euler")

    def sample(guider):
        return guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, disable_pbar=True, seed=0)

    times, row_counts = {name: [] for name in guiders}, {}
    for r in range(opts.rounds + 1):  # round 0 warms up (model load, kernels) and counts model rows
        for name, make in guiders.items():
            guider, rows[0] = make(), 0
            sync()
            t0 = time.perf_counter()
            sample(guider)
            sync()
            if r:
                times[name].append((time.perf_counter() - t0) / opts.steps)
            else:
                row_counts[name] = rows[0] / (opts.steps * opts.batch)  # euler: one evaluation per step
    step = {name: statistics.median(ts) for name, ts in times.items()}
    peak = {name: peak_bytes(lambda g=make(): sample(g), cuda) for name, make in guiders.items()}

    kind = pack.nodes._guider.sampling_kind(model)
    big = guiders if opts.batch == MATH_SHAPE[0] else guider_makers(pack, model, clip, MATH_SHAPE[0])
    math, repeats = {}, max(opts.rounds, 5)  # cheap, and short timings need more repeats to be steady
    for at, makers in ((shape, guiders), (MATH_SHAPE, big)):
        run = pack.guiders.technique.Run(sigmas, kind, at[0])
        math[at] = {name: median_time(math_runner(make(), at, sigmas, run, device), repeats, sync) / opts.steps
                    for name, make in makers.items()}

    # captioner throughput and auto-DNP, through the pack's own code
    captioner = pack.nodes.captioner.LoadedCaptioner("tiny-random-blip", tiny_blip(tmp / "LLM" / "tiny-random-blip"))
    images = torch.rand(CAPTION_IMAGES, opts.size, opts.size, 3)
    per_s = {k: CAPTION_IMAGES / median_time(lambda k=k: captioner.caption(images, max_new_tokens=opts.caption_tokens,
                                                                            images_per_call=k), opts.rounds, sync)
             for k in (1, CAPTION_IMAGES)}
    latent = {"samples": torch.zeros(shape)}
    auto_dnp, sampling = pack.nodes.auto_dnp, pack.nodes._sampling
    plain = median_time(lambda: auto_dnp.decode(vae, sampling.sample_with_guider(
        guiders["core CFGGuider"](), latent, 0, opts.steps, "euler", "normal", 1.0)), opts.rounds, sync)
    positive = pack.nodes._common.encode(clip, "a red fox in the snow")
    full = median_time(lambda: auto_dnp.AutoDNP.execute(
        model, clip, vae, captioner, positive, latent, 0, opts.steps, "euler", "normal", 1.0, CFG, -1.0, "cfg",
        NEG_WEIGHT, "", max_new_tokens=opts.caption_tokens, images_per_call=CAPTION_IMAGES, unload_after=False),
        opts.rounds, sync)

    report(opts, ckpt, shape, mm.get_torch_device_name(device), cuda, step, row_counts, math[shape], math[MATH_SHAPE],
           peak, per_s, plain, full)


def report(opts, ckpt, shape, device_name, cuda, step, row_counts, math_share, math_big, peak, per_s, plain, full):
    base, core = step["core CFGGuider"], step["core PerpNegGuider (k=1)"]
    tiny = not opts.ckpt
    print(f"`python scripts/benchmark.py {' '.join(sys.argv[1:])}`\n")
    print(f"device: {device_name}; checkpoint: {'tiny random SD1.5-layout UNet (lab/tiny_sd15.py)' if tiny else ckpt}; "
          f"latent {list(shape)}; euler, {opts.steps} steps x {opts.rounds} rounds (medians)"
          + ("; --quick smoke run: these numbers mean nothing" if opts.quick else "") + "\n")
    share_label = f"at latent {list(shape)}" + (", tiny UNet: an upper bound" if tiny else "")
    print(f"| what | model rows per step | time | vs core CFGGuider | vs core PerpNegGuider | target | guidance math, "
          f"share of step ({share_label}) | guidance math at {list(MATH_SHAPE)} | peak memory growth |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in step.items():
        rows = row_counts[name]
        if name in TARGETS:
            ratio, limit = s / step[TARGETS[name]], TOLERANCE
            target = f"<= {limit} x {TARGETS[name].split(' (')[0]} (equal rows): {'met' if ratio <= limit else 'MISSED'}"
        elif name.startswith("core"):
            target = ""
        else:
            limit = rows / 2 * TOLERANCE  # a GPU's cost grows with rows; a 2-core CPU's grows faster
            target = f"<= {limit:.2f} x CFG (rows / 2 x {TOLERANCE})" + (
                f": {'met' if s / base <= limit else 'MISSED'}" if cuda else ", GPU target")
        memory = "n/a" if peak[name] is None else f"{peak[name] / 2 ** 20:.1f} MiB"
        print(f"| {name} | {rows:g} | {s:.4f} s/step | {s / base:.3f} | {s / core:.3f} | {target} | "
              f"{math_share[name] / s:.2%} | {math_big[name] * 1e3:.2f} ms/step | {memory} |")
    blip = f"tiny random BLIP, {opts.caption_tokens} tokens per caption"
    for k, rate in per_s.items():
        print(f"| captioner, {k} image{'s' if k > 1 else ''} per generate call ({blip}) | | {rate:.2f} images/s "
              f"({rate / per_s[1]:.2f} x 1 per call) | | | | | | |")
    print(f"| one plain generation (core CFGGuider + VAE decode) | 2 | {plain:.3f} s | 1.000 | | | | | |")
    print(f"| auto-DNP total (DNS pass + decode + caption + final pass + decode) | 2, then 2 | {full:.3f} s | "
          f"{full / plain:.3f} (vs the plain generation) | | | | | |")
    print("\ntarget: NegGuide at equal model rows costs what core costs; elsewhere each guider's ratio to CFG on a GPU "
          f"should stay within its rows / 2 x {TOLERANCE}. Peak memory growth: " + (
              "torch.cuda.max_memory_allocated above the allocation before sampling." if cuda else
              "live CPU tensor bytes above the start, from torch.profiler allocation events (model weights excluded)."))


if __name__ == "__main__":
    main()
