"""Guidance windows: a technique's term acts only for noise levels in [sigma_end, sigma_start].

Outside the window the wrapped technique asks for no prompt and adds nothing, so the step is exactly plain CFG (or
one model pass at s = 1) and costs what CFG costs. Negatives matter most in the early, noisy steps, which is why
attention-space negatives (NAG) and adaptive guidance offer the same switch to save time. The bounds are inclusive,
as in ComfyUI's own conditioning timestep ranges, and a step is inside when its (largest) sigma is.

A technique with per-run state only sees the evaluations inside the window: DNG's posterior is frozen outside it
and, if the window opens again later, its next update spans the gap as one transition (docs/method.md).
"""
import math

import torch

from .technique import Wrapper


def check_window(start: float, end: float, names=("negative_start", "negative_end")):
    """ComfyUI-style percents of the denoising process: 0 = the first (noisiest) step, 1 = the end."""
    for name, value in zip(names, (start, end)):
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: {value!r} must be between 0 and 1 (0 = first step, 1 = last step)")
    if start > end:
        raise ValueError(f"{names[0]}/{names[1]}: the window starts at {start} but ends earlier, at {end}; set "
                         f"{names[0]} <= {names[1]} (e.g. 0 and 0.4 for the first 40% of the steps)")


class Window(Wrapper):
    def __init__(self, inner, sigma_start: float, sigma_end: float):
        super().__init__(inner)
        if math.isnan(sigma_start) or math.isnan(sigma_end) or sigma_start < sigma_end:
            raise ValueError(f"window: sigma_start {sigma_start} must be >= sigma_end {sigma_end}")
        self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)

    def inside(self, step) -> bool:
        sigma = float(torch.as_tensor(step.sigma).max())
        return self.sigma_end <= sigma <= self.sigma_start

    def conditions(self, step):
        return self.inner.conditions(step) if self.inside(step) else []

    def probe(self, step):
        return self.inner.probe(step) if self.inside(step) else None

    def term(self, step, d):
        return self.inner.term(step, d) if self.inside(step) else None
