"""View conditioning for turnarounds (math: guiders/views.py) and a small image grid node."""
import math

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import io

from ..guiders.views import SCHEDULES, VIEWS, mix_conditionings, parse_azimuths, view_mix, view_rows
from ._common import CONDITIONING, IMAGE, Negatives, ViewPrompts, encode, require_prompt

TEMPLATES = {"front": "{p}, front view", "side": "{p}, side view", "back": "{p}, back view", "overhead": "{p}, overhead view"}


def view_texts(prompt: str, templates: dict, view_prompts=None) -> dict:
    texts = {}
    for view in VIEWS:
        base = require_prompt((view_prompts or {}).get(view, prompt))
        if "{p}" not in templates[view]:
            raise ValueError(f"{view}_template: {templates[view]!r} has no {{p}}; write e.g. \"{TEMPLATES[view]}\"")
        texts[view] = templates[view].replace("{p}", base)
    return texts


def describe(azimuths, mixes, texts) -> str:
    lines = [f"{v:>8}: {texts[v]}" for v in VIEWS]
    for i, (a, m) in enumerate(zip(azimuths, mixes)):
        pos = " + ".join(f"{c:.2f} {v}" for v, c in m.positive.items())
        negs = ", ".join(f"{v} {w:.3f}" for v, w in m.negatives)
        shown = f"{a:g}" if -180 < a <= 180 else f"{a:g} (= {m.azimuth:g})"  # as typed; wrapped only when it differs
        lines.append(f"view {i}: azimuth {shown}, elevation {m.elevation:g} ({m.view}): {pos}; negatives {negs}")
    return "\n".join(lines)


class ViewConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        template_inputs = [
            io.String.Input(f"{v}_template", default=t,
                            tooltip=f"Prompt for the {v} view; {{p}} is replaced by the prompt (or its debiased {v} version).")
            for v, t in TEMPLATES.items()]
        return io.Schema(
            node_id="NegGuideViewConditioning",
            display_name="View Conditioning (NegGuide)",
            category=CONDITIONING,
            description="Several camera views of one object in one batch (Perp-Neg sec. 3.2): for each azimuth the "
                        "front/side/back prompts are blended and the opposite views become per-image Perp-Neg "
                        "negatives. Plug positive, empty and negatives into a NegGuide Perp-Neg guider and set the "
                        "latent batch size to batch_size: image i of the batch gets view i.",
            inputs=[
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP; every view prompt is encoded with it."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The object, without any view words, e.g. \"a corgi wearing a red hat\". "
                                        "Ignored for the views a connected view_prompts input provides."),
                io.String.Input("azimuths", default="0, 90, 180, 270",
                                tooltip="Camera azimuths in degrees, one per image in the batch (0 = front, 90 = side, "
                                        "180 = back; 350 is the same as -10), separated by commas."),
                io.Int.Input("views", default=0, min=0, max=64,
                             tooltip="0 = use the azimuth list. N > 0 = a turnaround of N views evenly spaced over "
                                     "360 degrees, starting at the first azimuth of the list."),
                io.Float.Input("elevation", default=0.0, min=-90.0, max=90.0, step=1.0,
                               tooltip="Camera elevation in degrees for every view (0 = eye level). Above "
                                       "overhead_threshold the overhead prompt is used alone, without negatives."),
                io.Combo.Input("schedule", options=list(SCHEDULES), default="threestudio",
                               tooltip="Negative-weight schedule: threestudio's smooth exponentials (default) or "
                                       "stable-dreamfusion's (weight 2, hard zeros near the pure views)."),
                io.Float.Input("front_range", default=45.0, min=1.0, max=45.0, step=0.5,
                               tooltip="Half-width of the front view in degrees: front and side prompts weigh equally "
                                       "at this azimuth and the side prompt is pure from twice it. 45 = reference code, "
                                       "22.5 = the debiasing paper's narrower front."),
                io.Float.Input("back_range", default=45.0, min=1.0, max=45.0, step=0.5,
                               tooltip="Half-width of the back view in degrees, like front_range around 180."),
                io.Float.Input("overhead_threshold", default=60.0, min=0.0, max=90.0, step=1.0,
                               tooltip="Elevations above this use the overhead prompt (threestudio: 60)."),
                io.Float.Input("weight_scale", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Multiplies every view negative weight of the schedule (1 = as published, 0 = "
                                       "interpolated prompts only)."),
                *template_inputs,
                ViewPrompts.Input("view_prompts", optional=True,
                                  tooltip="Per-view prompts from 'Debias View Prompts (NegGuide)'; they replace prompt."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="One blended view prompt per batch element."),
                io.Conditioning.Output(display_name="empty", tooltip="The empty prompt, for the guider's empty_conditioning."),
                Negatives.Output(display_name="negatives",
                                 tooltip="The two view negatives with one weight per batch element: connect to more_negatives."),
                io.Int.Output(display_name="batch_size", tooltip="The number of views: connect to the latent's batch_size."),
                io.String.Output(display_name="info", tooltip="Prompts, blend coefficients and weights per view."),
            ],
        )

    @classmethod
    def execute(cls, clip, prompt, azimuths, views, elevation, schedule, front_range, back_range, overhead_threshold,
                weight_scale, front_template, side_template, back_template, overhead_template,
                view_prompts=None) -> io.NodeOutput:
        if clip is None:
            raise ValueError("clip: no CLIP connected (the checkpoint may have no text encoder); connect the checkpoint's CLIP")
        templates = {"front": front_template, "side": side_template, "back": back_template, "overhead": overhead_template}
        texts = view_texts(prompt, templates, view_prompts)
        azimuths = parse_azimuths(azimuths, views)
        mixes = [view_mix(a, elevation, schedule, front_range, back_range, overhead_threshold, weight_scale) for a in azimuths]
        rows = view_rows(mixes)
        needed = [v for v in VIEWS if any(v in row for slot in rows.values() for row in slot)]
        pbar = comfy.utils.ProgressBar(len(needed) + 1)
        encoded = {}
        for view in needed:
            comfy.model_management.throw_exception_if_processing_interrupted()
            encoded[view] = encode(clip, texts[view])
            pbar.update(1)
        empty = encode(clip, "")
        pbar.update(1)
        n = len(mixes)
        negatives = []
        for k, slot in enumerate(("neg_a", "neg_b")):
            names = "/".join(dict.fromkeys(m.negatives[k][0] for m in mixes if m.view != "overhead")) or "none"
            negatives.append({"conditioning": mix_conditionings(encoded, rows[slot]),
                              "weight": [m.negatives[k][1] for m in mixes],
                              "label": f"view negative {k + 1}: {names} ({n} views; the latent batch must be {n})"})
        positive = mix_conditionings(encoded, rows["positive"])
        return io.NodeOutput(positive, empty, negatives, n, describe(azimuths, mixes, texts))


class ImageGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideImageGrid",
            display_name="Image Grid (NegGuide)",
            category=IMAGE,
            description="Lays a batch of images out as one grid image, row by row (e.g. the views of a turnaround).",
            inputs=[
                io.Image.Input("images", tooltip="A batch of images of the same size."),
                io.Int.Input("columns", default=0, min=0, max=64,
                             tooltip="Images per row; 0 = all in one row up to 8, else a near-square grid."),
            ],
            outputs=[io.Image.Output(tooltip="One image holding the whole batch; empty cells are black.")],
        )

    @classmethod
    def execute(cls, images, columns) -> io.NodeOutput:
        n, h, w, c = images.shape
        cols = columns or (n if n <= 8 else math.ceil(math.sqrt(n)))
        cols = min(cols, n)
        rows = math.ceil(n / cols)
        grid = torch.zeros(rows * cols, h, w, c, dtype=images.dtype, device=images.device)
        grid[:n] = images
        grid = grid.reshape(rows, cols, h, w, c).permute(0, 2, 1, 3, 4).reshape(1, rows * h, cols * w, c)
        return io.NodeOutput(grid)


NODES = [ViewConditioning, ImageGrid]
