"""DNG Plot draws the run whose latent it is wired to: one DNG guider shared by two SamplerCustomAdvanced nodes, and
ComfyUI's LRU cache replaying one sampler after the other ran."""
import pytest
import torch

from hostlib import Server, tiny_graph

# a tiny tau keeps the random model's huge evidence off the clamps, so runs with different seeds differ in p
SETTINGS = {"cfg": 7.5, "lambda0": 15.0, "prior": 0.01, "tau": 1e-4, "delta": 0.0, "p_min": 1e-6, "p_max": 0.99,
            "perpendicular": False, "per_element": False}


def graph(host, seeds=(1, 2), width=320):
    """One DNG guider; per seed a SamplerCustomAdvanced "sca<i>" and a DNG Plot "plot<i>" wired to its latent."""
    g = tiny_graph(host.ckpt, batch=2)
    g["guider"] = {"class_type": "NegGuideDNGGuider", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "unwanted": ["neg", 0],
        **SETTINGS}}
    g["sampler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "normal",
                                                              "steps": 3, "denoise": 1.0}}
    for i, seed in enumerate(seeds):
        g[f"noise{i}"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
        g[f"sca{i}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": [f"noise{i}", 0], "guider": ["guider", 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["latent", 0]}}
        g[f"plot{i}"] = {"class_type": "NegGuideDNGPlot", "inputs": {"guider": ["guider", 0], "latent": [f"sca{i}", 0],
                                                                   "width": width, "height": 320}}
    return g


def plots(host, g, executor=None):
    names = [k for k in g if k.startswith("plot")]
    out = host.execute(g, names, executor=executor)
    return [out[n][0] for n in names]


def dng_of(guider):
    return next(t for t in guider.technique.parts() if hasattr(t, "runs"))


def test_two_samplers_sharing_one_guider_each_plot_their_own_run(host):
    out = host.execute(graph(host), ["plot0", "plot1", "sca0", "sca1", "guider"], executor=host.new_executor())
    alone = [plots(host, graph(host, seeds=(seed,)), host.new_executor())[0] for seed in (1, 2)]
    assert not torch.equal(alone[0], alone[1])  # the two runs really differ, so a swap would be seen
    assert torch.equal(out["plot0"][0], alone[0]) and torch.equal(out["plot1"][0], alone[1])
    # drawn again once both samplers have run (whatever order the host picked), each latent still gives its run
    node = host.nodes.NODE_CLASS_MAPPINGS["NegGuideDNGPlot"]
    for i in (0, 1):
        again = node.execute(out["guider"][0], out[f"sca{i}"][0], 320, 320).args[0]
        assert torch.equal(again, alone[i])


def test_lru_replayed_sampler_plots_its_own_run_not_the_last_one(host):
    ex = host.execution.PromptExecutor(Server(), cache_type=host.execution.CacheType.LRU, cache_size=20)
    keep = ["plot0", "sca0", "guider"]
    first = host.execute(graph(host, seeds=(1,)), keep, executor=ex)
    second = host.execute(graph(host, seeds=(2,)), keep, executor=ex)  # the same cached guider samples seed 2
    replay = host.execute(graph(host, seeds=(1,), width=336), keep, executor=ex)
    dng = dng_of(replay["guider"][0])
    assert replay["guider"][0] is second["guider"][0] is first["guider"][0]
    # sampler 0 came from the cache: the guider's latest run is seed 2's, yet the plot must draw seed 1's run
    assert torch.equal(replay["sca0"][0]["samples"], first["sca0"][0]["samples"])
    assert torch.equal(dng.history()["p"], dng.run_history(second["sca0"][0]["samples"])["p"])
    assert not torch.equal(dng.history()["p"], dng.run_history(first["sca0"][0]["samples"])["p"])
    wide = plots(host, graph(host, seeds=(1,), width=336), host.new_executor())[0]
    assert torch.equal(replay["plot0"][0], wide)


def test_plot_of_a_latent_the_guider_never_produced_is_a_clear_error(host):
    g = graph(host, seeds=(4,))
    host.execute(g, ["plot0"])
    g["plot0"]["inputs"]["latent"] = ["latent", 0]  # the empty latent, not the sampler's output
    with pytest.raises(host.HostError, match="latent: no run of this DNG guider returned this latent"):
        host.execute(g, ["plot0"])
    g["scaled"] = {"class_type": "LatentMultiply", "inputs": {"samples": ["sca0", 0], "multiplier": 0.5}}
    g["plot0"]["inputs"]["latent"] = ["scaled", 0]  # the sampler's output, changed on the way
    with pytest.raises(host.HostError, match="with no node changing it in between"):
        host.execute(g, ["plot0"])


def test_a_guider_remembers_a_bounded_number_of_runs(host):
    dng_module = host.pack.guiders.dng
    dng = dng_module.DynamicNegativeGuidance()
    x = torch.zeros(1, 4, 8, 8)
    for i in range(dng_module.RUNS_KEPT + 1):
        dng.finish(x + i)
    assert len(dng.runs) == dng_module.RUNS_KEPT
    assert dng.run_history(x) is None and dng.run_history(x + 1) is not None
    assert dng.run_history(x.double() + 1) is not None  # the same values in another dtype are the same run
