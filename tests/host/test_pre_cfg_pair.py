"""Pre-cfg hooks written for CFG's pair see exactly the pair, even when a technique adds prompts to the batch.

Core's LatentApplyOperationCFG branches on len(conds_out) == 2: with a third row it used to tone-map the positive
prediction itself. At zero strength every guider must equal core CFGGuider with the same patch."""
import pytest
import torch

from hostlib import tiny_graph

DNG = {"cfg": 7.5, "prior": 0.3, "tau": 0.25, "delta": 0.003, "p_min": 1e-6, "p_max": 0.99,
       "perpendicular": False, "per_element": True}


def run(host, guider):
    g = tiny_graph(host.ckpt, batch=2)
    g["op"] = {"class_type": "LatentOperationTonemapReinhard", "inputs": {"multiplier": 1.0}}
    g["patched"] = {"class_type": "LatentApplyOperationCFG", "inputs": {"model": ["ckpt", 0], "operation": ["op", 0]}}
    common = {"model": ["patched", 0], "positive": ["pos", 0]}
    g["guider"] = {"core": {"class_type": "CFGGuider", "inputs": {**common, "negative": ["empty", 0], "cfg": 7.5}},
                   "dng0": {"class_type": "NegGuideDNGGuider", "inputs": {**common, "empty_conditioning": ["empty", 0],
                                                                          "unwanted": ["neg", 0], "lambda0": 0.0, **DNG}},
                   "dng": {"class_type": "NegGuideDNGGuider", "inputs": {**common, "empty_conditioning": ["empty", 0],
                                                                         "unwanted": ["neg", 0], "lambda0": 15.0, **DNG}},
                   "perp": {"class_type": "NegGuidePerpNegGuider", "inputs": {**common, "empty_conditioning": ["empty", 0],
                                                                              "negative": ["neg", 0], "cfg": 7.5, "neg_weight": 1.5}},
                   }[guider]
    g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}}
    g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["patched", 0], "scheduler": "normal", "steps": 3, "denoise": 1.0}}
    g["sca"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["noise", 0], "guider": ["guider", 0],
                "sampler": ["sampler", 0], "sigmas": ["sigmas", 0], "latent_image": ["latent", 0]}}
    return host.execute(g, ["sca"], executor=host.new_executor())["sca"][0]["samples"]


@pytest.fixture(scope="module")
def core(host):
    return run(host, "core")


def test_zero_strength_equals_core_with_the_same_pre_cfg_patch(host, core):
    dng0 = run(host, "dng0")  # the unwanted prompt is in the batch, the term is 0
    assert (dng0 - core).abs().max() <= 1e-4 * core.abs().max()  # batched vs paired rows: rounding only


@pytest.mark.parametrize("guider", ["dng", "perp"])
def test_at_strength_the_patch_is_applied_and_the_negative_acts(host, core, guider):
    out = run(host, guider)
    assert torch.isfinite(out).all() and (out - core).abs().max() > 1e-3 * core.abs().max()
