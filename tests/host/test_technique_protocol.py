"""A new technique needs one guiders/ class and nothing on the host side: a constant negative written here, in the
test, runs through the pack's one host adapter in a real ComfyUI, and composes with the Perpendicular wrapper."""
import importlib

import torch

from hostlib import recording_hooks, sample_guider, tiny_graph


def pack(host, name):
    return importlib.import_module(f"{host.pack.__name__}.{name}")


def conditionings(host):
    g = tiny_graph(host.ckpt, negative="a dog")
    out = host.execute(g, ["ckpt", "pos", "empty", "neg"])
    return out["ckpt"][0], out["pos"][0], out["empty"][0], out["neg"][0]


def constant_negative_class(host):
    technique = pack(host, "guiders.technique")

    class ConstantNegative(technique.Technique):
        """Classic negative prompting: term = -s w (D_neg - D_empty) (Perp-Neg's eq. 5 reference)."""

        def __init__(self, weight):
            self.weight, self.resets = weight, []

        def reset(self, run):
            self.resets.append((run.kind, run.batch, len(run.sigmas)))

        def conditions(self, step):
            return ["empty", "unwanted"]

        def term(self, step, d):
            return -step.scale * self.weight * (d["unwanted"].float() - d["empty"].float())

    return ConstantNegative


def sample(guider, noise, spy=None):
    return sample_guider(guider, noise, steps=3, options=spy)


def test_a_technique_from_one_class_runs_through_the_real_host(host):
    model, pos, empty, neg = conditionings(host)
    guider = pack(host, "nodes._guider").Guider(model, {"positive": pos, "empty": empty, "unwanted": neg}, 5.0,
                                                constant_negative_class(host)(0.8))
    seen, finals = [], []
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = sample(guider, noise, spy=recording_hooks(seen, finals))
    assert torch.isfinite(out).all()
    assert guider.technique.resets == [("ve", 2, 4)]  # reset once for the run, with its schedule and batch
    assert [len(s) for s in seen] == [3, 3, 3]  # positive, empty and the technique's prompt: one call per step
    for (d_pos, d_empty, d_neg), final in zip(seen, finals):
        want = d_empty + 5.0 * (d_pos - d_empty) - 5.0 * 0.8 * (d_neg - d_empty)
        assert torch.allclose(final, want, rtol=1e-4, atol=1e-4 * want.abs().max())


def test_composed_with_perpendicular_it_is_the_perp_neg_node(host):
    """Perpendicular(constant negative) is Perp-Neg: the projection is linear, so projecting the weighted sum equals
    projecting each negative as the Perp-Neg node does."""
    model, pos, empty, neg = conditionings(host)
    perpendicular = pack(host, "guiders.perp_neg").Perpendicular
    guider = pack(host, "nodes._guider").Guider(model, {"positive": pos, "empty": empty, "unwanted": neg}, 7.5,
                                                perpendicular(constant_negative_class(host)(1.5)))
    g = tiny_graph(host.ckpt, negative="a dog")
    g["guider"] = {"class_type": "NegGuidePerpNegGuider", "inputs": {
        "model": ["ckpt", 0], "positive": ["pos", 0], "empty_conditioning": ["empty", 0], "negative": ["neg", 0],
        "cfg": 7.5, "neg_weight": 1.5}}
    node_guider = host.execute(g, ["guider"])["guider"][0]
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    composed, node = sample(guider, noise), sample(node_guider, noise)
    assert (composed - node).abs().max() <= 1e-4 * node.abs().max()
    plain = comfy_cfg(host, model, pos, empty, noise)
    assert (node - plain).abs().max() > 1e-2 * plain.abs().max()  # the negative really acts


def comfy_cfg(host, model, pos, empty, noise):
    import comfy.samplers
    g = comfy.samplers.CFGGuider(model)
    g.set_conds(pos, empty)
    g.set_cfg(7.5)
    return sample(g, noise)
