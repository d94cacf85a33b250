"""Perp-Neg guider and sampler nodes (math: guiders/perp_neg.py, score clipping: guiders/score_clip.py)."""
from comfy_api.latest import io

from ..guiders.perp_neg import PerpNeg
from ..guiders.score_clip import ScoreClip
from ._checks import check_family, check_finite
from ._common import Negatives
from ._guider import WINDOW_INPUTS, Guider, windowed
from ._pair import node_pair
from .add_negative import chain

INPUTS = [
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
CLIP_TIP = ("Score clipping, an ADAPTATION of D-SDS score debiasing (Hong et al. 2023) to 2-D sampling: the guidance "
            "term (guided minus empty-prompt noise prediction) is clipped elementwise to +-psi, psi going linearly "
            "from start (first step) to end (last step). 0 and 0 = off. The paper's SD values for 3-D are 2 -> 8.")
LATER_INPUTS = [io.Float.Input("score_clip_start", default=0.0, min=0.0, max=100.0, step=0.1, optional=True, tooltip=CLIP_TIP),
                io.Float.Input("score_clip_end", default=0.0, min=0.0, max=100.0, step=0.1, optional=True, tooltip=CLIP_TIP),
                *WINDOW_INPUTS]


def build_guider(model, positive, empty_conditioning, cfg, negative=None, neg_weight=1.5, more_negatives=None,
                 score_clip_start=0.0, score_clip_end=0.0, negative_start=0.0, negative_end=1.0):
    check_finite(cfg=cfg, neg_weight=neg_weight, score_clip_start=score_clip_start, score_clip_end=score_clip_end)
    negatives = chain(None, negative, neg_weight, "negative") if negative is not None else []
    negatives += list(more_negatives or [])
    check_family(model, {"positive": positive, "empty_conditioning": empty_conditioning,
                         **{n["label"]: n["conditioning"] for n in negatives}})
    conds = {"positive": positive, "empty": empty_conditioning}
    conds.update({f"negative_{i}": n["conditioning"] for i, n in enumerate(negatives)})
    technique = PerpNeg([(f"negative_{i}", n["weight"], n["label"]) for i, n in enumerate(negatives)])
    technique = windowed(technique, model, negative_start, negative_end, has_negative=bool(technique.active))
    if score_clip_start > 0 or score_clip_end > 0:
        technique = ScoreClip(technique, score_clip_start, score_clip_end)
    return Guider(model, conds, cfg, technique)


DESCRIPTION = ("Perp-Neg (Armandpour et al. 2023): CFG where each negative prompt only removes the part of itself "
               "that is perpendicular to the positive prompt, computed per image. Several negatives, each with its "
               "own weight; all prompts run in one batched model call; RescaleCFG, APG, CFGZeroStar and other "
               "model patches keep working.")

NODES = node_pair("PerpNeg", "Perp-Neg", DESCRIPTION, INPUTS, build_guider, later_inputs=LATER_INPUTS)
