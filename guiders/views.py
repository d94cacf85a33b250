"""View-interpolated prompting for Perp-Neg.

Armandpour et al., "Re-imagine the Negative Prompt Algorithm: Transform 2D Diffusion into 3D,
alleviate Janus problem and Beyond" (2023), sec. 3.2, with the weight schedules of threestudio
(default) and stable-dreamfusion (option). Azimuth a in degrees, wrapped to [-180, 180), 0 = front:

    |a| < 90:  positive = r E_front + (1 - r) E_side;  negatives [front, side], weights [f_fs(r), f_sf(1 - r)]
    else:      positive = r E_side + (1 - r) E_back;   negatives [side, front], weights [f_sb(r), f_fsb(r)]
    f(r) = a exp(-b r) + c;  elevation > overhead threshold: the overhead prompt alone, no negatives.

The reference code uses r = 1 - |a|/90 and r = 2 - |a|/90. DECISION: the front range F and back range
B (half-widths in degrees, default 45 = threestudio's front/back_threshold) stretch that map:

    r_front_side = clip(1 - |a| / (2F), 0, 1),   r_side_back = clip((180 - |a|) / (2B), 0, 1)

so at F = B = 45 it is exactly the reference, and in general the two prompts weigh equally (r = 0.5)
at |a| = F (and 180 - B), the edge of the discrete view ranges (view_label). The paper's narrower
front, [-22.5, 22.5], is F = 22.5: pure side from 45 to 90 degrees. F and B above 45 would need the two
branches to overlap, so they are limited to (0, 45].

The weights here are >= 0 and SUBTRACTED (our Perp-Neg, guiders/perp_neg.py); both reference codes
add negated weights, which is the same thing.
"""
import math
import re
from typing import NamedTuple

import torch

VIEWS = ("front", "side", "back", "overhead")
CLIP_CHUNK = 77  # CLIP encoders pad every prompt to whole chunks of 77 tokens
SCHEDULES = ("threestudio", "stable-dreamfusion")

# threestudio PromptProcessor defaults (a, b, c) of f(r) = a exp(-b r) + c, chosen so f(1) ~ 0 where it must vanish.
F_FS = F_SF = (4.0, 0.5, -2.426)
F_SB = (1.0, 0.5, -0.606)
F_FSB = (1.0, 0.5, 0.967)
# stable-dreamfusion defaults (its --negative_w is -2 because it adds the weighted term).
SDF_NEGATIVE_W, SDF_FRONT_DECAY, SDF_SIDE_DECAY = 2.0, 2.0, 10.0


class ViewMix(NamedTuple):
    azimuth: float            # wrapped to [-180, 180)
    elevation: float
    view: str                 # the discrete view (front/side/back/overhead) for these angles
    r: float                  # interpolation coefficient of the branch (1 = first view of the pair)
    positive: dict            # view -> coefficient, sums to 1
    negatives: tuple          # two (view, weight) pairs, weight >= 0


def wrap_azimuth(azimuth: float) -> float:
    """Degrees into [-180, 180): 350 -> -10, 180 -> -180."""
    a = (float(azimuth) + 180.0) % 360.0 - 180.0
    return -180.0 if a >= 180.0 else a  # float rounding of tiny negatives


def exp_decay(abc, r: float) -> float:
    a, b, c = abc
    return a * math.exp(-b * r) + c


def check_angles(elevation: float, front_range: float = 45.0, back_range: float = 45.0):
    if not math.isfinite(elevation) or not -90.0 <= elevation <= 90.0:
        raise ValueError(f"elevation: {elevation} is outside [-90, 90] degrees; 0 = eye level, 90 = straight down from above")
    for name, value in (("front_range", front_range), ("back_range", back_range)):
        if not math.isfinite(value) or not 0.0 < value <= 45.0:
            raise ValueError(f"{name}: {value} must be in (0, 45] degrees (45 = threestudio, 22.5 = the debiasing paper's front)")


def view_label(azimuth: float, elevation: float = 0.0, front_range: float = 45.0, back_range: float = 45.0,
               overhead_threshold: float = 60.0) -> str:
    """The discrete view, threestudio's rule: overhead above the threshold, front inside +-F, back within B of 180."""
    a = abs(wrap_azimuth(azimuth))
    if elevation > overhead_threshold:
        return "overhead"
    if a < front_range:
        return "front"
    return "back" if a > 180.0 - back_range else "side"


def _weights(schedule: str, front_branch: bool, r: float) -> tuple:
    if schedule == "threestudio":
        if front_branch:
            return exp_decay(F_FS, r), exp_decay(F_SF, 1.0 - r)
        return exp_decay(F_SB, r), exp_decay(F_FSB, r)
    if schedule == "stable-dreamfusion":  # hard zeros keep a view from pushing against itself
        w = SDF_NEGATIVE_W
        if front_branch:
            front = 0.0 if r > 0.8 else math.exp(-r * SDF_FRONT_DECAY) * w
            side = 0.0 if r < 0.2 else math.exp(-(1.0 - r) * SDF_SIDE_DECAY) * w
            return front, side
        side = 0.0 if r > 0.8 else math.exp(-r * SDF_SIDE_DECAY) * w / 2
        return side, w
    raise ValueError(f"schedule: unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def view_mix(azimuth: float, elevation: float = 0.0, schedule: str = "threestudio", front_range: float = 45.0,
             back_range: float = 45.0, overhead_threshold: float = 60.0, weight_scale: float = 1.0) -> ViewMix:
    """Interpolation coefficients and negative weights for one camera (docs/method.md, view prompting)."""
    check_angles(elevation, front_range, back_range)
    a = wrap_azimuth(azimuth)
    label = view_label(a, elevation, front_range, back_range, overhead_threshold)
    if label == "overhead":
        return ViewMix(a, elevation, label, 1.0, {"overhead": 1.0}, (("front", 0.0), ("side", 0.0)))
    if abs(a) < 90.0:
        r = min(max(1.0 - abs(a) / (2.0 * front_range), 0.0), 1.0)
        pair, negs = ("front", "side"), ("front", "side")
    else:
        r = min(max((180.0 - abs(a)) / (2.0 * back_range), 0.0), 1.0)
        pair, negs = ("side", "back"), ("side", "front")
    w = _weights(schedule, pair[0] == "front", r)
    # max(0, .): the threestudio constants put f(1) a hair above 0; never let rounding make a weight negative.
    negatives = tuple((v, max(0.0, wi * weight_scale)) for v, wi in zip(negs, w))
    return ViewMix(a, elevation, label, r, {pair[0]: r, pair[1]: 1.0 - r}, negatives)


def parse_azimuths(text: str, views: int = 0) -> list:
    """"0, 90, 180, 270" -> floats. views > 0: that many views evenly spaced over 360 degrees,
    starting at the first listed azimuth (0 if the list is empty)."""
    parts = [p for p in re.split(r"[,;\s]+", str(text).strip()) if p]
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"azimuths: {p!r} is not a number; write degrees separated by commas, e.g. \"0, 90, 180, 270\"") from None
        if not math.isfinite(v):
            raise ValueError(f"azimuths: {p!r} is not a finite angle")
        values.append(v)
    if views > 0:
        start = values[0] if values else 0.0
        return [start + 360.0 * i / views for i in range(views)]
    if not values:
        raise ValueError("azimuths: no azimuth given; write e.g. \"0\" or \"0, 90, 180, 270\", or set views to a count")
    return values


def view_rows(mixes) -> dict:
    """Per batch row, the mixture of view conditionings each conditioning output needs:
    "positive" and the two negative slots "neg_a"/"neg_b" (rows are {view: coefficient})."""
    rows = {"positive": [m.positive for m in mixes], "neg_a": [], "neg_b": []}
    for m in mixes:
        for slot, (view, _) in zip(("neg_a", "neg_b"), m.negatives):
            # overhead rows carry weight 0: any view works, reuse the positive so nothing extra is encoded
            rows[slot].append(m.positive if m.view == "overhead" else {view: 1.0})
    return rows


def _mix_rows(values: dict, rows, key: str) -> torch.Tensor:
    """Row i = sum_v rows[i][v] * values[v] (each of batch 1), in fp32, returned in the input dtype."""
    first = next(iter(values.values()))
    lengths = sorted({v.shape[1] for v in values.values()}) if key == "cond" else []
    if len(lengths) > 1:
        if any(n % CLIP_CHUNK for n in lengths):
            raise ValueError(f"view_prompts / *_template: the view prompts encode to {lengths} tokens and this model's "
                             "text encoder does not pad prompts to a common length (e.g. Chroma, Qwen-Image, Lumina 2), "
                             "so they cannot be blended token by token. Give every view prompt the same number of words, "
                             "or use the default templates without view_prompts.")
        # CLIP prompts over 75 tokens come in chunks of 77: repeating every chunk leaves cross-attention unchanged,
        # which is how ComfyUI itself batches conditionings of different lengths.
        length = math.lcm(*lengths)
        values = {n: v.repeat(1, length // v.shape[1], *([1] * (v.ndim - 2))) for n, v in values.items()}
    shapes = {tuple(v.shape) for v in values.values()}
    if len(shapes) != 1 or first.shape[0] != 1:
        raise ValueError(f"conditioning {key!r}: the view prompts encoded to shapes {sorted(shapes)}; expected one "
                         "batch-1 shape for all views. Use the CLIP that belongs to the checkpoint and plain prompts.")
    out = []
    for row in rows:
        total = sum(c * values[v].float() for v, c in row.items() if c != 0.0)
        out.append(total.to(first.dtype))
    return torch.cat(out)


def mix_conditionings(encoded: dict, rows) -> list:
    """Blend ComfyUI CONDITIONINGs (lists of [tensor, dict]) per batch row.

    encoded: view -> CONDITIONING of ONE prompt. Every floating tensor is blended (cross-attention,
    pooled_output, any other per-prompt embedding), so every model family gets a consistent view;
    other entries must agree across views and are kept (integer tensors are repeated per row)."""
    counts = {len(c) for c in encoded.values()}
    if len(counts) != 1:
        raise ValueError("the view prompts encoded to different numbers of conditioning entries (CLIP hook "
                         "schedules?); encode them with the same CLIP settings")
    out = []
    for k in range(counts.pop()):
        entries = {v: c[k] for v, c in encoded.items()}
        used = {v: e for v, e in entries.items() if any(v in row for row in rows)}
        cond = _mix_rows({v: e[0] for v, e in used.items()}, rows, "cond")
        extras = {}
        for key in dict.fromkeys(k for e in used.values() for k in e[1]):  # a key only some views have cannot blend
            vals = {v: e[1].get(key) for v, e in used.items()}
            first = next(iter(vals.values()))
            if all(torch.is_tensor(x) and x.is_floating_point() for x in vals.values()):
                extras[key] = _mix_rows(vals, rows, key)
            elif torch.is_tensor(first):
                if not all(torch.is_tensor(x) and x.shape == first.shape and torch.equal(x, first) for x in vals.values()):
                    raise ValueError(f"conditioning {key!r} differs between the view prompts and cannot be blended")
                extras[key] = first.repeat(len(rows), *([1] * (first.ndim - 1))) if first.ndim and first.shape[0] == 1 else first
            else:
                extras[key] = first  # options such as hooks or timestep ranges: the same for every view
        out.append([cond, extras])
    return out
