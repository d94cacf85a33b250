"""State across images and runs, for every guider node (the set of test_matrix.py): a batch is its images sampled
one by one, a cached guider gives the same result for every queued prompt (and the DNG plot draws only the last
run), an interrupted run leaves nothing behind, and fp16 / bf16 compute and latents stay finite."""
import copy

import pytest
import torch

from hostlib import spied
from test_matrix import GUIDERS, built, guider_graph, noise_for, sample

DETERMINISTIC = ("euler", "heun", "dpmpp_2m", "uni_pc")
BATCHED = [n for n in GUIDERS if n != "views"]  # the view batch is one view per image: test_host_views.py


@pytest.fixture(scope="module")
def guiders(host):
    return built(host, guider_graph(host.ckpt))


@pytest.mark.parametrize("sampler", DETERMINISTIC)
@pytest.mark.parametrize("name", BATCHED)
def test_batch_of_four_equals_four_single_runs(guiders, name, sampler):
    """Row i of a batch (different noise per row) is the single run of row i, to float noise of the scale: a
    batched convolution sums in another order, and heun's 2-step run on the random model amplifies that to ~2e-4
    (core's CFGGuider, the DNS guider, too); a guider that mixes images is off by O(1) (test_host_perp_neg.py)."""
    noise = noise_for(name, batch=4, seed=1)
    batched = sample(guiders[name], noise, sampler)
    singles = torch.cat([sample(guiders[name], noise[i:i + 1], sampler) for i in range(4)])
    assert (batched - singles).abs().max() <= 1e-3 * singles.abs().max(), (batched - singles).abs().max()
    assert not torch.allclose(singles[0], singles[1])  # rows really differ, so the check can see a mix-up


def queued_graph(host, seed, steps=3):
    """Every guider node into its own SamplerCustomAdvanced ("sca_<name>", euler_ancestral: the seed matters), and
    a DNG plot per DNG guider ("plot_<name>"). Only the seed changes between prompts, so ComfyUI's cache keeps the
    guider objects and reruns the samplers."""
    g = guider_graph(host.ckpt)
    g["latent"]["inputs"].update(width=64, height=64, batch_size=2)  # the view guider's batch
    g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
    g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "normal",
                                                              "steps": steps, "denoise": 1.0}}
    for name, (class_type, _) in GUIDERS.items():
        g[f"sca_{name}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": [name, 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["latent", 0]}}
        if class_type == "NegGuideDNGGuider":
            g[f"plot_{name}"] = {"class_type": "NegGuideDNGPlot", "inputs": {
                "guider": [name, 0], "latent": [f"sca_{name}", 0], "width": 256, "height": 256}}
    return g


def test_three_queued_prompts_through_cached_guiders_are_identical(host):
    """Prompts with seeds 5, 6, 5: the first and third latents and DNG plots are equal, so nothing of the second
    run (or the first) is carried over; the plot's history holds exactly one run."""
    ex = host.new_executor()
    runs = []
    for seed in (5, 6, 5):
        g = queued_graph(host, seed)
        wanted = [n for n in g if n.startswith(("sca_", "plot_"))] + list(GUIDERS)
        runs.append(host.execute(g, wanted, executor=ex))
    first, _, third = runs
    for name in GUIDERS:
        assert first[name][0] is third[name][0], f"{name}: the guider node was not cached"
        a, b, c = (r[f"sca_{name}"][0]["samples"] for r in runs)
        assert torch.equal(a, c) and not torch.allclose(a, b), name
    for plot in (n for n in first if n.startswith("plot_")):
        assert torch.equal(first[plot][0], third[plot][0]), plot  # a plot of the runs so far would have grown
        dng = third[plot.removeprefix("plot_")][0].find(host_dng(host))
        assert dng.history()["p"].shape == (3, 2), plot  # 3 sigma levels (euler_ancestral, 3 steps) x 2 images


def host_dng(host):
    import importlib
    return importlib.import_module(f"{host.pack.__name__}.guiders.dng").DynamicNegativeGuidance


@pytest.mark.parametrize("name", GUIDERS)
def test_interrupted_run_then_new_run_equals_an_uninterrupted_one(guiders, name):
    """The interrupt raises where ComfyUI's progress hook does (in the sampler's step callback); the next run of
    the same guider starts clean (DNG posterior, windows, score-clip schedule)."""
    import comfy.model_management as mm
    noise = noise_for(name, seed=3)
    clean = sample(guiders[name], noise, "dpmpp_2m", steps=4)

    def interrupt_at_step_2(step, *_):
        if step == 1:
            mm.interrupt_current_processing()
        mm.throw_exception_if_processing_interrupted()

    try:
        with pytest.raises(mm.InterruptProcessingException):
            sample(guiders[name], noise_for(name, seed=4), "dpmpp_2m", steps=4, callback=interrupt_at_step_2)
    finally:
        mm.interrupt_current_processing(False)
    assert torch.equal(sample(guiders[name], noise, "dpmpp_2m", steps=4), clean)


@pytest.fixture(scope="module", params=["fp16", "bf16"])
def half_guiders(host, request):
    """The guiders on the model patched by core's ModelComputeDtype: fp32 weights cast to the dtype for every
    layer, as ComfyUI runs a half-precision model on a GPU."""
    g = guider_graph(host.ckpt, model=("dtype", 0))
    g["dtype"] = {"class_type": "ModelComputeDtype", "inputs": {"model": ["ckpt", 0], "dtype": request.param}}
    return request.param, built(host, g)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m"])
@pytest.mark.parametrize("name", GUIDERS)
def test_half_precision_model_and_latents_stay_finite(half_guiders, name, sampler):
    label, half = half_guiders
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[label]
    predictions = []
    guider = copy.copy(half[name])  # the spy stays off the module's guider
    guider.model_options = spied(guider.model_options, lambda call: predictions.append(call.out[0].dtype))
    out = sample(guider, noise_for(name, batch=2, seed=2, dtype=dtype), sampler, steps=3)
    assert torch.isfinite(out).all()
    # the guider's math really saw half-precision predictions (the samplers' sigma arithmetic may promote x to fp32
    # after the first step; dpmpp_2m keeps it)
    assert predictions[0] == dtype and (sampler != "dpmpp_2m" or set(predictions) == {dtype}), predictions
