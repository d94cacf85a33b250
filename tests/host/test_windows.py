"""Guidance windows in a real ComfyUI: outside the window a step is exactly core CFG and evaluates only the CFG pair."""
import pytest
import torch

from hostlib import spied, tiny_graph

PERP = {"cfg": 7.5, "neg_weight": 1.5}
DNG = {"cfg": 7.5, "lambda0": 15.0, "prior": 0.5, "tau": 0.25, "delta": 0.003, "p_min": 1e-6, "p_max": 0.99,
       "perpendicular": False, "per_element": True, "correction": "off"}  # no divergence probe rows to count


def guider(host, kind, **window):
    g = tiny_graph(host.ckpt)
    common = {"model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0]}
    if kind == "perp":
        g["guider"] = {"class_type": "NegGuidePerpNegGuider", "inputs": {**common, "negative": ["neg", 0], **PERP, **window}}
    elif kind == "dng":
        g["guider"] = {"class_type": "NegGuideDNGGuider", "inputs": {**common, "unwanted": ["neg", 0], **DNG, **window}}
    else:
        g["guider"] = {"class_type": "CFGGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                                                             "negative": ["empty", 0], "cfg": 7.5}}
    return host.execute(g, ["guider"], executor=host.new_executor())["guider"][0]


def sample(gd, noise, steps=5, rows=None):
    import comfy.samplers

    if rows is not None:
        gd.model_options = spied(gd.model_options, lambda call: rows.append(len(call.conds)))
    sigmas = comfy.samplers.calculate_sigmas(gd.model_patcher.get_model_object("model_sampling"), "normal", steps)
    out = gd.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas, disable_pbar=True, seed=0)
    return out, sigmas


@pytest.mark.parametrize("kind", ["perp", "dng"])
def test_window_that_covers_no_step_is_core_cfg_bit_for_bit(host, kind):
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    core, _ = sample(guider(host, "core"), noise)
    closed, _ = sample(guider(host, kind, negative_start=1.0, negative_end=1.0), noise)
    assert torch.equal(closed, core)
    full, _ = sample(guider(host, kind), noise)
    assert (full - core).abs().max() > 1e-3 * core.abs().max()  # the negative does act when the window is open


@pytest.mark.parametrize("kind, rows_inside", [("perp", 3), ("dng", 3)])
def test_rows_per_step_inside_and_outside_the_window(host, kind, rows_inside):
    """negative on the first 40%: inside, positive + empty + the negative; outside, only the CFG pair."""
    gd = guider(host, kind, negative_start=0.0, negative_end=0.4)
    rows = []
    _, sigmas = sample(gd, torch.randn(1, 4, 8, 8), rows=rows)
    edge = gd.model_patcher.get_model_object("model_sampling").percent_to_sigma(0.4)
    want = [rows_inside if s >= edge else 2 for s in sigmas[:-1].tolist()]
    assert rows == want and 2 in rows and rows_inside in rows, (rows, sigmas.tolist(), edge)


def test_dng_posterior_is_frozen_outside_the_window(host):
    gd = guider(host, "dng", negative_start=0.0, negative_end=0.4)
    sample(gd, torch.randn(1, 4, 8, 8))
    dng = next(t for t in gd.technique.parts() if hasattr(t, "history"))
    hist = dng.history()
    edge = gd.model_patcher.get_model_object("model_sampling").percent_to_sigma(0.4)
    assert len(hist["sigma"]) >= 1 and (hist["sigma"] >= edge).all()  # only steps inside the window were tracked


def test_bad_windows_name_the_inputs(host):
    with pytest.raises(host.HostError, match="negative_start/negative_end.*ends earlier"):
        guider(host, "perp", negative_start=0.6, negative_end=0.2)
    g = tiny_graph(host.ckpt)
    g["guider"] = {"class_type": "NegGuidePerpNegGuider", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], **PERP, "negative_end": 0.5}}
    with pytest.raises(host.HostError, match="no negative prompt for the window"):
        host.execute(g, ["guider"], executor=host.new_executor())
    assert guider(host, "perp") is not None  # the host runs the next good prompt
