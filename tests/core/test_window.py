"""Guidance windows (guiders/window.py) without a host: bounds, what is evaluated, and bad input."""
import pytest
import torch

from negguide.guiders.perp_neg import PerpNeg
from negguide.guiders.technique import Step, evaluated
from negguide.guiders.window import Window, check_window


def step(sigma, scale=7.5):
    return Step(torch.zeros(2, 4), torch.tensor(sigma), None, scale)


def test_inside_the_window_inclusive_bounds_only():
    w = Window(PerpNeg([("neg", 1.5, "negative")]), sigma_start=5.0, sigma_end=1.0)
    for sigma, inside in ((9.0, False), (5.0, True), (2.0, True), (1.0, True), (0.5, False)):
        names = evaluated(w, step(sigma))
        assert names == (["positive", "empty", "neg"] if inside else ["positive", "empty"]), sigma
        d = {n: torch.randn(2, 4) for n in names}
        assert (w.term(step(sigma), d) is None) != inside
    assert evaluated(w, step(9.0, scale=1.0)) == ["positive"]  # cfg 1 outside the window: one pass


def test_bad_windows():
    with pytest.raises(ValueError, match="negative_start/negative_end"):
        check_window(0.7, 0.3)
    with pytest.raises(ValueError, match="negative_end"):
        check_window(0.0, 1.5)
    with pytest.raises(ValueError, match="sigma_start"):
        Window(PerpNeg([]), 1.0, 2.0)
    check_window(0.0, 0.0)  # an empty window is allowed: plain CFG
