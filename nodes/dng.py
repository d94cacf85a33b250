"""DNG guider, sampler and plot nodes (math: guiders/dng.py; chart: nodes/plot.py).

A guider node returns before sampling runs, so the diagnostics live on the guider object: each run
resets them (start_run) and fills one row per sigma level. "DNG Plot" takes the same GUIDER plus the
sampler's LATENT, which only exists after sampling, so it always draws the run that just happened.
"""
import logging

import comfy.model_sampling
import numpy as np
import torch
from comfy_api.latest import io

from ..guiders.dng import DynamicNegativeGuidance
from ._checks import check_family
from ._guider import NegGuideGuider, as_negative
from ._sampling import ksampler_inputs, sample_with_guider
from .negatives import CATEGORY
from .plot import dng_chart

# Samplers whose steps draw fresh noise: the posterior is tracked from exactly that noise (docs/dng.md).
STOCHASTIC = ("ancestral", "sde", "lcm", "ddpm", "seeds", "sa_solver")
_warned = set()


class DNGGuider(NegGuideGuider):
    def __init__(self, model, positive, empty, unwanted, cfg, dng: DynamicNegativeGuidance):
        super().__init__(model)
        self.cfg = cfg
        self.dng = dng
        self.inner_set_conds({"positive": positive, "negative": as_negative(empty), "unwanted": as_negative(unwanted)})

    def extra_names(self):
        return ["unwanted"]

    def sample(self, noise, latent_image, sampler, sigmas, *args, **kwargs):
        for name, tensor in (("noise", noise), ("latent_image", latent_image)):
            if tensor is not None and not torch.isfinite(tensor).all():
                raise ValueError(f"{name}: the latent holds NaN or inf values, so DNG cannot track a posterior. "
                                 "Fix the node that produced it (VAE Encode of a broken image, a bad latent file).")
        name = getattr(getattr(sampler, "sampler_function", None), "__name__", "")
        if name and not any(tag in name for tag in STOCHASTIC) and name not in _warned:
            _warned.add(name)  # once per sampler and session
            logging.warning("NegGuide DNG: sampler %s adds no noise per step, so the posterior of the unwanted "
                            "concept is tracked poorly (see docs/dng.md in the NegGuide folder); prefer euler_ancestral or dpmpp_sde.", name)
        return super().sample(noise, latent_image, sampler, sigmas, *args, **kwargs)

    def start_run(self, noise, sigmas):
        sampling = self.model_patcher.get_model_object("model_sampling")
        self.dng.reset("const" if isinstance(sampling, comfy.model_sampling.CONST) else "ve")

    def combine(self, x, sigma, outs):
        return self.dng.extra(x, sigma, outs["positive"], outs["negative"], outs["unwanted"])


TIPS = {
    "unwanted": "The concept to keep out (e.g. 'a dog' or a style). DNG pushes away from it only while the image "
                "seems to be heading there.",
    "lambda0": "Strength: the negative scale is lambda0 * p / (1 - p). The paper's SD runs use 12-27. 0 = plain CFG.",
    "prior": "Starting belief (strictly between 0 and 1) that the image shows the unwanted concept: p at the first "
             "step. The paper uses 0.01.",
    "tau": "Temperature on each step's evidence: 1 = exact Bayes, smaller = slower, smoother posterior. The paper's "
           "SD runs use 0.2-0.3.",
    "delta": "Offset added to each step's log-evidence (divided by twice the step's noise variance): a bias toward "
             "suspecting the concept, strongest in the last low-noise steps. The paper's SD runs use 0.002-0.004.",
    "p_min": "Lower clamp of the posterior, so strong early evidence against the concept can still be overturned. "
             "The reference code uses 1e-6.",
    "p_max": "Upper clamp of the posterior; caps the negative scale at lambda0 * p_max / (1 - p_max) "
             "(99 x lambda0 at 0.99, 4 x at 0.8). Must exceed p_min.",
    "perpendicular": "DNG x Perp-Neg: push away only along the part of the unwanted direction that is perpendicular "
                     "to the positive one, so an unwanted concept close to the prompt cannot cancel it.",
    "per_element": "Measure distances per latent element (scaled to a 4x64x64 latent, i.e. SD at 512 px), so tau and "
                   "delta mean the same at every resolution. Off = raw sums as in the paper: bigger latents then make "
                   "the posterior jump faster.",
}


def dng_inputs():
    return [
        io.Model.Input("model", tooltip="The diffusion model."),
        io.Conditioning.Input("positive", tooltip="What you want to see."),
        io.Conditioning.Input("empty_conditioning", tooltip="The empty prompt (CLIP Text Encode with no text): the unconditional branch of CFG."),
        io.Conditioning.Input("unwanted", tooltip=TIPS["unwanted"]),
        io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="CFG scale s of the positive prompt."),
        io.Float.Input("lambda0", default=15.0, min=0.0, max=1000.0, step=0.5, round=0.01, tooltip=TIPS["lambda0"]),
        io.Float.Input("prior", default=0.01, min=1e-6, max=0.999, step=0.001, round=False, tooltip=TIPS["prior"]),
        io.Float.Input("tau", default=0.25, min=0.0, max=10.0, step=0.01, round=False, tooltip=TIPS["tau"]),
        io.Float.Input("delta", default=0.003, min=0.0, max=1.0, step=0.0005, round=False, tooltip=TIPS["delta"]),
        io.Float.Input("p_min", default=1e-6, min=1e-12, max=0.5, step=1e-6, round=False, tooltip=TIPS["p_min"]),
        io.Float.Input("p_max", default=0.99, min=0.01, max=0.999999, step=0.01, round=False, tooltip=TIPS["p_max"]),
        io.Boolean.Input("perpendicular", default=False, tooltip=TIPS["perpendicular"]),
        io.Boolean.Input("per_element", default=True, tooltip=TIPS["per_element"]),
    ]


def build_guider(model, positive, empty_conditioning, unwanted, cfg, lambda0, prior, tau, delta, p_min, p_max,
                 perpendicular=False, per_element=True):
    check_family(model, {"positive": positive, "empty_conditioning": empty_conditioning, "unwanted": unwanted})
    dng = DynamicNegativeGuidance(lambda0, prior, tau, delta, p_min, p_max, per_element=per_element, perp=perpendicular)
    return DNGGuider(model, positive, empty_conditioning, unwanted, cfg, dng)


def render_history(dng: DynamicNegativeGuidance, width=640, height=560) -> torch.Tensor:
    """IMAGE [1, H, W, 3]: posterior and lambda per step (log axes), one curve per sample."""
    hist = dng.history()
    if hist["p"].numel() == 0:
        raise ValueError("guider: this DNG guider has not sampled yet. Connect the LATENT output of the sampler that "
                         "uses it to the plot's latent input, so the plot runs after sampling.")
    image = dng_chart(hist["sigma"].tolist(), hist["p"].tolist(), hist["lambda"].tolist(), dng.lambda0, width, height)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


DESCRIPTION = ("Dynamic Negative Guidance (Koulischer et al. 2025): the negative prompt's scale follows the "
               "posterior probability that each image is turning into the unwanted concept, tracked step by step, "
               "so images that never head there are left alone and the rest are steered away. Positive, empty and "
               "unwanted prompts run in one batched model call. Best with samplers that add noise each step "
               "(euler_ancestral, dpmpp_sde, dpmpp_2m_sde): deterministic ones barely move the posterior.")
PLOT_HINT = " Wire its GUIDER and the sampler's LATENT into 'DNG Plot (NegGuide)' to see p and lambda per step."


class DNGGuiderNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideDNGGuider",
            display_name="DNG Guider (NegGuide)",
            category=CATEGORY,
            description=DESCRIPTION + " Use with SamplerCustomAdvanced." + PLOT_HINT,
            inputs=dng_inputs(),
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, **kwargs) -> io.NodeOutput:
        return io.NodeOutput(build_guider(**kwargs))


class DNGPlotNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideDNGPlot",
            display_name="DNG Plot (NegGuide)",
            category=CATEGORY,
            description="Draws the last run of a DNG guider: the posterior p of the unwanted concept and the negative "
                        "scale lambda at every step, one curve per image in the batch.",
            inputs=[
                io.Guider.Input("guider", tooltip="The GUIDER output of 'DNG Guider (NegGuide)'."),
                io.Latent.Input("latent", tooltip="The LATENT output of the sampler that used this guider: it makes the plot run after sampling."),
                io.Int.Input("width", default=640, min=256, max=2048, step=16, tooltip="Plot width in pixels."),
                io.Int.Input("height", default=560, min=256, max=2048, step=16, tooltip="Plot height in pixels (two panels)."),
            ],
            outputs=[io.Image.Output(display_name="plot")],
        )

    @classmethod
    def execute(cls, guider, latent, width=640, height=560) -> io.NodeOutput:
        if not isinstance(guider, DNGGuider):
            raise ValueError(f"guider: expected the output of 'DNG Guider (NegGuide)', got {type(guider).__name__}")
        return io.NodeOutput(render_history(guider.dng, width, height))


class DNGSamplerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideDNGSampler",
            display_name="DNG KSampler (NegGuide)",
            category=CATEGORY,
            description=DESCRIPTION + " A drop-in for KSampler that also returns the p / lambda plot.",
            inputs=dng_inputs() + [io.Latent.Input("latent_image", tooltip="The latent to denoise.")] + ksampler_inputs(),
            outputs=[io.Latent.Output(), io.Image.Output(display_name="plot")],
        )

    @classmethod
    def execute(cls, latent_image, seed, steps, sampler_name, scheduler, denoise, **kwargs) -> io.NodeOutput:
        guider = build_guider(**kwargs)
        latent = sample_with_guider(guider, latent_image, seed, steps, sampler_name, scheduler, denoise)
        plot = render_history(guider.dng) if guider.dng.history()["p"].numel() else torch.ones(1, 64, 64, 3)
        return io.NodeOutput(latent, plot)


def benchmark_guiders(model, positive, empty, unwanted):
    """Guider factories for scripts/benchmark.py --extra dng (paper defaults, with and without the perp option)."""
    def make(perp):
        return lambda: build_guider(model, positive, empty, unwanted, 7.5, 15.0, 0.01, 0.25, 0.003, 1e-6, 0.99, perp)
    return {"NegGuide DNG": make(False), "NegGuide DNG perp": make(True)}


NODES = [DNGGuiderNode, DNGPlotNode, DNGSamplerNode]
