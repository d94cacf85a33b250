"""DNG on exact scores: tracked-vs-exact posterior per sampler, mode masses, figures.

    python scripts/dng_lab.py [--n 2000] [--steps 30,100] [--out docs/img] [--only euler,dpmpp_2m]

Uses ComfyUI's own samplers (comfy.samplers.sampler_object, so ddim and uni_pc too) when a checkout is at
COMFYUI_PATH or ~/ComfyUI (only that folder goes on sys.path, plus the tests' torchvision stub when torchvision
is missing); otherwise the lab's own euler / euler_ancestral / heun / dpmpp_2m. Every sampler runs with the
divergence correction off and auto. Prints markdown tables (pasted into docs/dng.md) and writes PNG figures
(PIL only) to --out.
"""
import argparse
import functools
import importlib.util
import os
import pathlib
import sys
import types

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
HALF = {"eta": 0.5}
# (row label, ComfyUI sampler name, extra options): every KSampler sampler the lab drives, ancestral ones also at eta 0.5
SAMPLERS = [("euler", "euler", {}), ("euler_ancestral", "euler_ancestral", {}),
            ("euler_ancestral eta 0.5", "euler_ancestral", HALF), ("heun", "heun", {}), ("dpm_2", "dpm_2", {}),
            ("dpm_2_ancestral", "dpm_2_ancestral", {}), ("dpm_2_ancestral eta 0.5", "dpm_2_ancestral", HALF),
            ("lms", "lms", {}), ("dpmpp_2s_ancestral eta 0.5", "dpmpp_2s_ancestral", HALF),
            ("dpmpp_sde", "dpmpp_sde", {}), ("dpmpp_2m", "dpmpp_2m", {}), ("dpmpp_2m_sde", "dpmpp_2m_sde", {}),
            ("dpmpp_2m_sde eta 0.5", "dpmpp_2m_sde", HALF), ("dpmpp_3m_sde", "dpmpp_3m_sde", {}), ("ddim", "ddim", {}),
            ("uni_pc", "uni_pc", {}), ("deis", "deis", {}), ("res_multistep", "res_multistep", {}), ("lcm", "lcm", {})]


def load(name, path, package=False):
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=[str(path.parent)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


load("negguide", ROOT / "__init__.py", package=True)  # as ComfyUI loads it; the repo root stays off sys.path
plot = load("negguide_plot", ROOT / "support" / "plot.py")
from negguide.lab import gmm as L  # noqa: E402
from negguide.guiders.dng import DynamicNegativeGuidance, transition  # noqa: E402

UNCOND = L.GaussianMixture([[-1.5, 0.0], [1.5, 0.0], [0.0, 6.0], [6.0, -3.0], [-6.0, -3.0]], 0.5,
                           [0.25, 0.2, 0.2, 0.2, 0.15])
POS, NEG, REST = UNCOND.subset([0, 1, 2]), UNCOND.subset([0]), UNCOND.subset([1, 2])
MODE_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#7f7f7f", "#bcbd22"]


def comfy_samplers():
    """{name: fn(model, x, sigmas, kind, generator)} from ComfyUI's k_diffusion, or None without a checkout."""
    host = pathlib.Path(os.environ.get("COMFYUI_PATH") or pathlib.Path.home() / "ComfyUI").expanduser()
    if not (host / "comfy" / "k_diffusion" / "sampling.py").is_file():
        return None
    sys.path.insert(0, str(host))
    if importlib.util.find_spec("torchvision") is None:
        sys.path.append(str(ROOT / "lab" / "stubs"))
    from comfy.cli_args import args
    args.cpu = True
    import comfy.model_sampling as ms
    import comfy.samplers as cs

    class FlowSampling(ms.ModelSamplingDiscreteFlow, ms.CONST):
        pass

    class EpsSampling(ms.ModelSamplingDiscrete, ms.EPS):
        pass

    def sampling(kind):
        if kind == "ve":
            return EpsSampling()
        return FlowSampling(types.SimpleNamespace(sampling_settings={"shift": 3.0}))

    def wrap(name, options):
        sampler = cs.sampler_object(name)

        def run(model, x, sigmas, kind, generator):
            ms_ = sampling(kind)
            shim = types.SimpleNamespace(model_sampling=ms_, model_patcher=types.SimpleNamespace(get_model_object=lambda _: ms_))
            shim.inner_model = shim
            call = type("Model", (), {"__call__": lambda self, x, s, **kw: model(x, s[0]).to(x.dtype), "inner_model": shim})()
            seed = int(torch.randint(0, 2 ** 31, (1,), generator=generator))
            if name.startswith("uni_pc"):  # its solver tables are fp32 and it writes into its sigmas
                x, sigmas = x.float(), sigmas.float()
            return sampler.sampler_function(call, x, sigmas.clone(), extra_args={"seed": seed}, disable=True,
                                            **sampler.extra_options, **options).double()
        return run

    return {label: wrap(name, options) for label, name, options in SAMPLERS}


def schedule(kind, steps):
    return L.karras_sigmas(steps, 0.03, 14.6) if kind == "ve" else L.flow_sigmas(steps)


def masses(x):
    return torch.bincount(UNCOND.posterior(x, 1e-3).argmax(1), minlength=5).double() / x.shape[0]


def off_modes(x):
    """Fraction of samples more than 3 standard deviations from every mode: not data at all."""
    return float((torch.cdist(x, UNCOND.means).min(1).values > 1.5).double().mean())


def tracked_run(sampler, kind, lambda0, n, steps, seed=0, correction="off"):
    """Sample with DNG at tau 1, delta 0 (exact Bayes) and record tracked vs exact p at every evaluation."""
    state = DynamicNegativeGuidance(lambda0, float(POS.weights[0]), 1.0, 0.0, 1e-12, 1 - 1e-6, kind, per_element=False,
                                    correction=correction)
    rec = []

    def on_eval(x, sigma):
        rec.append((float(sigma), state.tracker.log_ps[-1].double().exp(), L.posterior_mass(POS, [0], x, sigma, kind)))

    sigmas = schedule(kind, steps)
    model = L.guided_model(state, denoisers(kind), 1.0, sigmas, kind, on_eval)
    gen = torch.Generator().manual_seed(seed)
    x = sampler(model, L.prior_noise(n, 2, sigmas, gen), sigmas, kind, gen)
    return x, rec


def denoisers(kind="ve"):
    return {"positive": L.denoiser(POS, kind), "empty": L.denoiser(UNCOND, kind), "unwanted": L.denoiser(NEG, kind)}


def plain_run(sampler, kind, term, n, steps, seed=0):
    """Sample with a term given as a function (an exact reference, not a technique of the pack)."""
    sigmas = schedule(kind, steps)
    model = L.guided_model(L.Term(term), denoisers(kind), 1.0, sigmas, kind)
    gen = torch.Generator().manual_seed(seed)
    return sampler(model, L.prior_noise(n, 2, sigmas, gen), sigmas, kind, gen)


def exact_dng(x, s, dp, de, dn, kind="ve"):
    """-lambda (D_neg - D_pos) with the exact posterior, lambda0 1: the reference tracked DNG aims at."""
    p = L.posterior_mass(POS, [0], x, s, kind)[:, None]
    return -(p / (1 - p)) * (dn - dp)


def tracking_table(samplers, n, steps_list):
    """One row per sampler, form and step count: tracking error and agreement (lambda0 0) and the unwanted mass
    left at lambda0 1, each without and with the divergence correction (auto), plus the exact-posterior DNG mass."""
    rows, curves = [], {}
    for steps in steps_list:
        for kind in ("ve", "const"):
            for name, sampler in samplers.items():
                cells = {}
                for correction in ("off", "auto"):
                    _, rec = tracked_run(sampler, kind, 0.0, n, steps, correction=correction)
                    err = [float((t - e).abs().mean()) for _, t, e in rec]
                    agree = float(((rec[-1][1] > 0.5) == (rec[-1][2] > 0.5)).double().mean())
                    mass = masses(tracked_run(sampler, kind, 1.0, n, steps, correction=correction)[0])[0]
                    cells[correction] = (sum(err) / len(err), agree, float(mass))
                    if kind == "ve" and steps == steps_list[0] and correction == "auto":
                        curves[name] = rec
                exact = float(masses(plain_run(sampler, kind, functools.partial(exact_dng, kind=kind), n, steps))[0])
                (e0, a0, m0), (e1, a1, m1) = cells["off"], cells["auto"]
                rows.append(f"| {name} | {kind} | {steps} | {len(rec)} | {e0:.3f} | **{e1:.3f}** | {a0:.3f} | **{a1:.3f}** "
                            f"| {m0:.3f} | **{m1:.3f}** | {exact:.3f} |")
                print(rows[-1], flush=True)
    head = ("| sampler | form | steps | evaluations | mean abs(p - p_exact), off | auto | final agreement, off | auto "
            "| unwanted mass at lambda0 1, off | auto | exact posterior |\n|---|---|---|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows), curves


def tracking_figure(curves, path, k=4):
    panels = []
    for name, rec in curves.items():
        xs = list(range(len(rec)))
        ax = plot.Axes((420, 260), (0, len(rec) - 1), (0, 1), f"{name} (VE, correction auto): exact line, tracked dots",
                       "evaluation", "p")
        for b in range(k):
            ax.line(xs, [float(e[b]) for _, _, e in rec], plot.color(b))
            ax.dots(xs, [float(t[b]) for _, t, _ in rec], plot.color(b))
        panels.append(ax.image)
    plot.stack(panels, columns=2).save(path)


def modes_figure(samplers, n, steps, path):
    sampler = samplers["euler_ancestral"]
    runs = {"positive (no negative)": plain_run(sampler, "ve", lambda x, s, dp, de, dn: 0 * dp, n, steps),
            "negative prompting, scale 1": plain_run(sampler, "ve", lambda x, s, dp, de, dn: -(dn - dp), n, steps),
            "DNG, exact posterior, lambda0 1": plain_run(sampler, "ve", exact_dng, n, steps),
            "DNG, tracked posterior, lambda0 1": tracked_run(sampler, "ve", 1.0, n, steps)[0]}
    panels, lines = [], []
    for title, x in runs.items():
        ax = plot.Axes((360, 360), (-9, 9), (-6, 14), title, "x1", "x2")
        lab = UNCOND.posterior(x, 1e-3).argmax(1)
        for mode in range(5):
            pts = x[lab == mode][:600]
            ax.dots(pts[:, 0].tolist(), pts[:, 1].tolist(), MODE_COLORS[mode], radius=1)
        panels.append(ax.image)
        m = masses(x)
        lines.append(f"| {title} | " + " | ".join(f"{float(v):.3f}" for v in m) + f" | {off_modes(x):.3f} |")
    plot.stack(panels, columns=2).save(path)
    return ("| run | A (unwanted) | B (next to A) | C | D | E | off every mode |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(lines))


def delta_table():
    """sum of delta / (2 v) over a run (delta 0.003): how far delta alone pushes log p, per SD1.5 schedule."""
    try:
        import comfy.model_sampling as ms
        import comfy.samplers as cs
    except ImportError:
        return "(needs ComfyUI)"
    sampling = ms.ModelSamplingDiscrete()
    rows = []
    for sched in ("normal", "karras", "exponential", "sgm_uniform", "simple"):
        for steps in (20, 30, 50):
            s = cs.calculate_sigmas(sampling, sched, steps).double()
            s = s[s > 0]
            inc = 0.003 / (2 * transition(s[:-1], s[1:], "ve")[2])
            rows.append(f"| {sched} | {steps} | {float(s[-1]):.3f} | {float(inc.sum()):.2f} | {float(inc[-1]):.2f} "
                        f"| {float(inc[s[1:] > 1].sum()):.3f} |")
    return ("| scheduler | steps | last sigma | total delta push on log p | last step alone | at sigma > 1 |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))


def example_plot(samplers, path):
    """What the DNG Plot node draws, on a lab run: 6 samples, exact-Bayes tracking (tau 1, delta 0), lambda0 1."""
    state = DynamicNegativeGuidance(1.0, float(POS.weights[0]), 1.0, 0.0, 1e-6, 0.99, per_element=False)
    sigmas = L.karras_sigmas(20, 0.03, 14.6)
    model = L.guided_model(state, denoisers(), 1.0, sigmas)
    gen = torch.Generator().manual_seed(4)
    samplers["euler_ancestral"](model, L.prior_noise(6, 2, sigmas, gen), sigmas, "ve", gen)
    h = state.history()
    plot.dng_chart(h["sigma"].tolist(), h["p"].tolist(), h["lambda"].tolist(), 1.0).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="trajectories per run")
    ap.add_argument("--steps", default="30,100", help="comma list of step counts for the tracking table")
    ap.add_argument("--only", default="", help="comma list of sampler labels (default: all)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    opts = ap.parse_args()
    out = pathlib.Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    samplers = comfy_samplers()
    print("samplers:", "ComfyUI k_diffusion" if samplers else "the lab's own (no ComfyUI checkout found)")
    samplers = samplers or dict(L.SAMPLERS)
    if opts.only:
        samplers = {k: v for k, v in samplers.items() if k in opts.only.split(",")}
    steps = [int(v) for v in opts.steps.split(",")]
    table, curves = tracking_table(samplers, opts.n, steps)
    tracking_figure({k: curves[k] for k in ("euler_ancestral", "dpmpp_sde", "euler", "dpmpp_2m") if k in curves},
                    out / "dng_tracking.png")
    print("\n" + table + "\n")
    if "euler_ancestral" in samplers:
        print(modes_figure(samplers, opts.n, steps[0], out / "dng_modes.png") + "\n")
        example_plot(samplers, out / "dng_plot_example.png")
    print(delta_table())


if __name__ == "__main__":
    main()
