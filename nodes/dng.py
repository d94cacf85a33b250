"""DNG guider, sampler and plot nodes (math: guiders/dng.py; chart: support/plot.py).

A guider node returns before sampling runs, so the diagnostics live on the guider's DNG technique: each run
resets them and fills one row per sigma level. One guider can feed several samplers and ComfyUI's cache can replay
any of them, so every finished run is filed under the samples it returned; "DNG Plot" takes the GUIDER plus a
sampler's LATENT and draws the run that produced that latent.
"""
import sys

import numpy as np
import torch
from comfy_api.latest import io, ui

from ..guiders.dng import CORRECTIONS, DynamicNegativeGuidance
from ..guiders.perp_neg import Perpendicular
from ..support.plot import dng_chart
from ._checks import check_family, check_finite
from ._common import SAMPLING
from ._guider import WINDOW_INPUTS, Guider, windowed
from ._pair import node_pair

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
    "correction": "Divergence correction of the posterior for samplers that add less noise per step than "
                  "euler_ancestral (euler, dpmpp_2m, uni_pc, ddim, eta < 1): without it their p barely leaves the "
                  "prior. auto = only where the measured noise is below the ancestral step's, on = every step, "
                  "off = the paper's tracker. Costs up to 2 extra model rows per step (docs/dng.md).",
}


INPUTS = [
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
CORRECTION = io.Combo.Input("correction", options=list(CORRECTIONS), default="auto", optional=True,
                            tooltip=TIPS["correction"])


def build_guider(model, positive, empty_conditioning, unwanted, cfg, lambda0, prior, tau, delta, p_min, p_max,
                 perpendicular=False, per_element=True, negative_start=0.0, negative_end=1.0, correction="auto"):
    check_family(model, {"positive": positive, "empty_conditioning": empty_conditioning, "unwanted": unwanted})
    check_finite(cfg=cfg)
    technique = DynamicNegativeGuidance(lambda0, prior, tau, delta, p_min, p_max, per_element=per_element,
                                        correction=correction)
    if perpendicular:
        technique = Perpendicular(technique)
    technique = windowed(technique, model, negative_start, negative_end)
    return Guider(model, {"positive": positive, "empty": empty_conditioning, "unwanted": unwanted}, cfg, technique)


def run_of(dng: DynamicNegativeGuidance, latent) -> dict:
    """The history of the run that returned this LATENT, or a ValueError saying how to wire the plot."""
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise ValueError(f"latent: expected a LATENT, got {type(latent).__name__}. Connect the sampler's output.")
    if not dng.runs:
        raise ValueError("guider: this DNG guider has not sampled yet. Connect the LATENT output of the sampler that "
                         "uses it to the plot's latent input, so the plot runs after sampling.")
    hist = dng.run_history(latent["samples"])
    if hist is None:
        raise ValueError("latent: no run of this DNG guider returned this latent. Connect the first LATENT output "
                         "('output', not 'denoised_output') of the sampler that uses this guider straight to the "
                         "plot, with no node changing it in between.")
    return hist


def render_history(dng: DynamicNegativeGuidance, hist: dict, width=640, height=560) -> torch.Tensor:
    """IMAGE [1, H, W, 3]: posterior and lambda per step (log axes), one curve per sample, of one run's history."""
    note, warn = dng.tracking_note(hist)
    image = dng_chart(hist["sigma"].tolist(), hist["p"].tolist(), hist["lambda"].tolist(), dng.lambda0, width, height,
                      note, warn)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


DESCRIPTION = ("Dynamic Negative Guidance (Koulischer et al. 2025): the negative prompt's scale follows the "
               "posterior probability that each image is turning into the unwanted concept, tracked step by step, "
               "so images that never head there are left alone and the rest are steered away. Positive, empty and "
               "unwanted prompts run in one batched model call. With deterministic samplers (euler, dpmpp_2m) the "
               "divergence correction (on by default where needed) keeps the posterior on track, at up to 2 extra "
               "model rows per step.")
PLOT_HINT = " Wire its GUIDER and the sampler's LATENT into 'DNG Plot (NegGuide)' to see p and lambda per step."


class DNGPlotNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideDNGPlot",
            display_name="DNG Plot (NegGuide)",
            category=SAMPLING,
            description="Draws one run of a DNG guider, the one that produced the connected latent: the posterior p "
                        "of the unwanted concept and the negative scale lambda at every step, one curve per image in "
                        "the batch.",
            inputs=[
                io.Guider.Input("guider", tooltip="The GUIDER output of 'DNG Guider (NegGuide)'."),
                io.Latent.Input("latent", tooltip="The LATENT output of the sampler that used this guider: the plot draws "
                                                  "the run that produced it (one guider may feed several samplers)."),
                io.Int.Input("width", default=640, min=256, max=2048, step=16, tooltip="Plot width in pixels."),
                io.Int.Input("height", default=560, min=256, max=2048, step=16, tooltip="Plot height in pixels (two panels)."),
            ],
            outputs=[io.Image.Output(display_name="plot")],
        )

    @classmethod
    def execute(cls, guider, latent, width=640, height=560) -> io.NodeOutput:
        dng = guider.find(DynamicNegativeGuidance) if isinstance(guider, Guider) else None
        if dng is None:
            raise ValueError(f"guider: expected the output of 'DNG Guider (NegGuide)', got {type(guider).__name__}")
        return io.NodeOutput(render_history(dng, run_of(dng, latent), width, height))


def plot_after_sampling(guider, latent):
    """The KSampler node's plot: its guider is built for this one run, so the run just finished is the one."""
    dng = guider.find(DynamicNegativeGuidance)
    hist = dng.history()
    return (render_history(dng, hist) if hist["p"].numel() else torch.ones(1, 64, 64, 3),)


def plot_preview(guider, node_cls):
    """The final plot shown on the sampler node itself, no Preview node needed."""
    return ui.PreviewImage(plot_after_sampling(guider, None)[0], cls=node_cls)


def live_curve(guider, node_id):
    """After every evaluation, send p and lambda per step per image to the node that built this guider; the
    frontend (js/dng_live.js) draws them on it while sampling runs. Nothing is sent without a running server
    (ComfyUI's main.py imports its server module before any node loads; in-process runs have none)."""
    server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if server is None or node_id is None:
        return
    dng = guider.find(DynamicNegativeGuidance)

    def send():
        h = dng.history()
        server.send_sync("negguide.dng", {"node": node_id, "sigma": h["sigma"].tolist(), "p": h["p"].tolist(),
                                          "lambda": h["lambda"].tolist(), "lambda0": dng.lambda0}, server.client_id)
    guider.on_evaluated = send


NODES = [*node_pair("DNG", "DNG", DESCRIPTION, INPUTS, build_guider, later_inputs=[*WINDOW_INPUTS, CORRECTION],
                    guider_note=" Use with SamplerCustomAdvanced." + PLOT_HINT,
                    sampler_note=" A drop-in for KSampler that also returns the p / lambda plot.",
                    sampler_outputs=[io.Image.Output(display_name="plot")], finish=plot_after_sampling,
                    observe=live_curve, preview=plot_preview,
                    default_sampler="dpmpp_2m_sde"),  # tracks best without probe rows (docs/dng.md)
         DNGPlotNode]
