"""Perp-Neg guider and sampler nodes (math: guiders/perp_neg.py)."""
from comfy_api.latest import io

from ..guiders.perp_neg import perp_neg_extra
from ..guiders.score_clip import scheduled_clip
from ._checks import check_family, check_weight, weight_values
from ._guider import NegGuideGuider, as_negative
from ._sampling import ksampler_inputs, sample_with_guider
from .negatives import CATEGORY, Negatives, chain


class PerpNegGuider(NegGuideGuider):
    def __init__(self, model, positive, empty, negatives, cfg, score_clip=None):
        super().__init__(model)
        self.cfg = cfg
        self.score_clip, self.sigmas = score_clip, None  # score_clip: (psi_start, psi_end) or None
        self.negatives = [{"label": n["label"], "weight": n["weight"]} for n in negatives]
        conds = {"positive": positive, "negative": as_negative(empty)}
        for i, n in enumerate(negatives):
            conds[f"neg_{i}"] = as_negative(n["conditioning"])
        self.inner_set_conds(conds)
        # A negative whose weights are all zero contributes exactly nothing: never evaluate it.
        self.active = [i for i, n in enumerate(negatives) if any(w != 0 for w in weight_values(n["weight"]))]

    def start_run(self, noise, sigmas):
        self.sigmas = sigmas
        for n in self.negatives:
            check_weight(n["label"], n["weight"], batch=noise.shape[0])

    def extra_names(self):
        return [f"neg_{i}" for i in self.active]

    def needs_uncond(self):
        return bool(self.active) or self.score_clip is not None  # both measure from D_empty, even at cfg 1

    def combine(self, x, sigma, outs):
        extra = perp_neg_extra(outs["positive"], outs["negative"], [outs[f"neg_{i}"] for i in self.active],
                               [self.negatives[i]["weight"] for i in self.active], self.cfg)
        if self.score_clip is None:
            return extra
        return scheduled_clip(outs["positive"], outs["negative"], extra, self.cfg, sigma, self.sigmas, *self.score_clip)


def perp_neg_inputs():
    return [
        io.Model.Input("model", tooltip="The diffusion model."),
        io.Conditioning.Input("positive", tooltip="What you want to see."),
        io.Conditioning.Input("empty_conditioning",
                              tooltip="The empty prompt (CLIP Text Encode with no text): the unconditional branch Perp-Neg measures every direction from."),
        io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Guidance scale s. The paper's 2D runs use 7.5."),
        io.Conditioning.Input("negative", optional=True,
                              tooltip="A negative prompt. Only its part perpendicular to the positive is removed, so it cannot cancel the positive."),
        io.Float.Input("neg_weight", default=1.5, min=0.0, max=100.0, step=0.05,
                       tooltip="Weight w of the negative input (>= 0; 0 = plain CFG). The paper's 2D example uses 1.5."),
        Negatives.Input("more_negatives", optional=True,
                        tooltip="More weighted negatives from a chain of 'Add Negative (NegGuide)' nodes (or a view-conditioning node)."),
    ]


def score_clip_inputs():
    """Appended after every other input so saved workflows keep their widget order."""
    tip = ("Score clipping, an ADAPTATION of D-SDS score debiasing (Hong et al. 2023) to 2-D sampling: the guidance "
           "term (guided minus empty-prompt noise prediction) is clipped elementwise to +-psi, psi going linearly "
           "from start (first step) to end (last step). 0 and 0 = off. The paper's SD values for 3-D are 2 -> 8.")
    return [io.Float.Input("score_clip_start", default=0.0, min=0.0, max=100.0, step=0.1, optional=True, tooltip=tip),
            io.Float.Input("score_clip_end", default=0.0, min=0.0, max=100.0, step=0.1, optional=True, tooltip=tip)]


def build_guider(model, positive, empty_conditioning, cfg, negative=None, neg_weight=1.5, more_negatives=None,
                 score_clip_start=0.0, score_clip_end=0.0):
    negatives = chain(None, negative, neg_weight, "negative") if negative is not None else []
    negatives += list(more_negatives or [])
    named = {"positive": positive, "empty_conditioning": empty_conditioning}
    named.update({n["label"]: n["conditioning"] for n in negatives})
    check_family(model, named)
    clip = (score_clip_start, score_clip_end) if score_clip_start > 0 or score_clip_end > 0 else None
    return PerpNegGuider(model, positive, empty_conditioning, negatives, cfg, score_clip=clip)


DESCRIPTION = ("Perp-Neg (Armandpour et al. 2023): CFG where each negative prompt only removes the part of itself "
               "that is perpendicular to the positive prompt, computed per image. Several negatives, each with its "
               "own weight; all prompts run in one batched model call; RescaleCFG, APG, CFGZeroStar and other "
               "model patches keep working.")


class PerpNegGuiderNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuidePerpNegGuider",
            display_name="Perp-Neg Guider (NegGuide)",
            category=CATEGORY,
            description=DESCRIPTION + " Use with SamplerCustomAdvanced.",
            inputs=perp_neg_inputs() + score_clip_inputs(),
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, **kwargs) -> io.NodeOutput:
        return io.NodeOutput(build_guider(**kwargs))


class PerpNegSamplerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuidePerpNegSampler",
            display_name="Perp-Neg KSampler (NegGuide)",
            category=CATEGORY,
            description=DESCRIPTION + " A drop-in for KSampler.",
            inputs=perp_neg_inputs() + [io.Latent.Input("latent_image", tooltip="The latent to denoise.")] + ksampler_inputs()
            + score_clip_inputs(),
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, latent_image, seed, steps, sampler_name, scheduler, denoise, **kwargs) -> io.NodeOutput:
        guider = build_guider(**kwargs)
        return io.NodeOutput(sample_with_guider(guider, latent_image, seed, steps, sampler_name, scheduler, denoise))


NODES = [PerpNegGuiderNode, PerpNegSamplerNode]
