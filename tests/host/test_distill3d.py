"""Distill 3D, Render Turntable and Field to Mesh in a real ComfyUI on the tiny SD1.5 checkpoint (CPU, tiny sizes)."""
import json
import math
import struct

import pytest
import torch

from hostlib import spied as spied_options, tiny_graph

PROMPT = "a corgi"
# tiny: 8^3 grid, 8x8 latent renders (the one-level tiny UNet takes any size)
SETTINGS = dict(prompt=PROMPT, steps=2, cfg=100.0, schedule="threestudio", front_range=45.0, back_range=45.0,
                weight_scale=1.0, psi_start=2.0, psi_end=8.0, weighting="sjc", seed=3, grid=8, render_size=8, lr=0.05,
                emptiness_weight=1000.0, preview_every=1)


@pytest.fixture(scope="module")
def tiny(host):
    out = host.execute(tiny_graph(host.ckpt), ["ckpt"])["ckpt"]
    mod = host.pack.nodes.distill3d
    return dict(model=out[0], clip=out[1], vae=out[2], mod=mod, node=mod.Distill3D, encode=host.nodes.CLIPTextEncode().encode)


def distill(tiny, model=None, **kw):
    args = {**SETTINGS, **kw}
    return tiny["node"].execute(model=model or tiny["model"], clip=tiny["clip"], **args).args


def params(f3d):
    return torch.cat([p.detach().flatten() for p in f3d.field.parameters()])


def spied(tiny, calc=None, post=None):
    """A clone of the tiny model recording (conds, outputs, sigma) per batched model call (hostlib.spied)."""
    calls = []

    def record(call):
        calls.append((call.conds, call.out, call.sigma))
        if calc:
            calc(len(calls))

    m = tiny["model"].clone()
    m.model_options = spied_options(m.model_options, record)
    if post:
        m.set_model_sampler_post_cfg_function(post)
    return m, calls


@pytest.fixture(scope="module")
def trained(tiny):
    return distill(tiny)


def test_field_trains_and_the_seed_fixes_it(tiny, trained):
    mod = tiny["mod"]
    f3d, preview, info = trained
    fresh = mod.LatentField(8, 4, seed=3)
    assert f3d.steps == 2 and f3d.field.resolution == 8 and f3d.field.channels == 4
    weights = params(f3d)
    assert torch.isfinite(weights).all()
    held_out = mod.cam.make_cameras([77.0], 20.0)  # never a training camera (those are drawn at random)
    before, after = fresh(held_out, 8, 8).latent, f3d.field(held_out, 8, 8).latent
    assert (after - before).abs().max() > 1e-3
    assert preview.shape == (1, 8, 64, 3) and 0 <= preview.min() and preview.max() <= 1
    assert "eps model" in info and "loss: first" in info
    assert torch.equal(weights, params(distill(tiny)[0]))


def test_conditions_reaching_the_model_follow_the_view_schedule(tiny, monkeypatch):
    """Each step: ONE batched call with positive, empty and that camera's blended view negatives; the guided D is
    Perp-Neg with the schedule's weights for that azimuth."""
    from negguide.guiders.perp_neg import perp_neg
    from negguide.guiders.views import view_mix

    mod = tiny["mod"]
    azimuths = [30.0, 120.0, -150.0]
    queue = list(azimuths)
    monkeypatch.setattr(mod.cam, "sample_cameras", lambda batch, gen, *a, device=None, **k:
                        mod.cam.make_cameras([queue.pop(0)], 0.0, device=device))
    guided = []
    model, calls = spied(tiny, post=lambda args: guided.append(args["denoised"].clone()) or args["denoised"])
    distill(tiny, model=model, steps=len(azimuths), psi_start=0.0, psi_end=0.0)
    e = {v: tiny["encode"](tiny["clip"], f"{PROMPT}, {v} view")[0][0][0] for v in ("front", "side", "back")}
    empty = tiny["encode"](tiny["clip"], "")[0][0][0]
    assert len(calls) == len(azimuths) == len(guided)
    for a, (conds, out, _), d in zip(azimuths, calls, guided):
        m = view_mix(a)
        seen = [c[0]["model_conds"]["c_crossattn"].cond for c in conds]
        want = [sum(w * e[v] for v, w in m.positive.items()), empty, *(e[v] for v, _ in m.negatives)]
        assert len(seen) == 4 and conds[1][0].get("prompt_type") == "negative"
        for got, expected in zip(seen, want):
            assert torch.allclose(got, expected, atol=1e-5), a
        expected = perp_neg(out[0], out[1], out[2:], [w for _, w in m.negatives], 100.0)
        assert torch.allclose(d, expected, rtol=1e-4, atol=1e-4), a


def test_zero_weight_view_negative_is_not_evaluated(tiny, monkeypatch):
    mod = tiny["mod"]
    monkeypatch.setattr(mod.cam, "sample_cameras", lambda batch, gen, *a, device=None, **k:
                        mod.cam.make_cameras([0.0], 0.0, device=device))
    model, calls = spied(tiny)
    distill(tiny, model=model, steps=1, schedule="stable-dreamfusion")  # pure front: its front negative weighs 0
    assert len(calls[0][0]) == 3


def test_prediction_type_comes_from_model_sampling(tiny, host):
    mod = tiny["mod"]
    g = tiny_graph(host.ckpt)
    g["flow"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["ckpt", 0], "shift": 3.0}}
    g["v"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["ckpt", 0], "sampling": "v_prediction",
                                                               "zsnr": False}}
    out = host.execute(g, ["flow", "v"])
    flow, vpred = out["flow"][0], out["v"][0]
    assert [mod.prediction_of(m) for m in (tiny["model"], vpred, flow)] == ["eps", "eps", "flow"]
    # the flow model's state x = (1 - sigma) x0 + sigma n: its sigmas stay in (0, 1), and the field still trains
    flow, calls = spied({**tiny, "model": flow})
    f3d, _, info = distill(tiny, model=flow)
    assert "flow model" in info and torch.isfinite(params(f3d)).all()
    assert all(0 < float(s.flatten()[0]) < 1 for _, _, s in calls)


def test_interrupt_stops_cleanly(tiny):
    import comfy.model_management as mm
    model, calls = spied(tiny, calc=lambda n: n == 2 and mm.interrupt_current_processing(True))
    try:
        with pytest.raises(mm.InterruptProcessingException):
            distill(tiny, model=model, steps=5)
    finally:
        mm.interrupt_current_processing(False)
    assert len(calls) == 2  # the step after the interrupt never reached the model
    assert distill(tiny, steps=1)[0].steps == 1  # and the next run works


def test_resume_continues_a_copy(tiny, trained):
    first = trained[0]
    kept = params(first)
    resumed = distill(tiny, steps=1, field=first, grid=4)[0]
    assert resumed.steps == 3 and resumed.field.resolution == 8
    assert torch.equal(params(first), kept) and not torch.equal(params(resumed), kept)


def test_bad_input_fails_before_any_work(tiny, monkeypatch):
    import comfy.latent_formats
    import comfy.model_management as mm
    model, calls = spied(tiny)
    with pytest.raises(ValueError, match="steps: 0"):
        distill(tiny, model=model, steps=0)
    with pytest.raises(ValueError, match="psi_start/psi_end"):
        distill(tiny, model=model, psi_end=0.0)
    monkeypatch.setattr(mm, "get_free_memory", lambda *a, **k: 2**20)
    with pytest.raises(ValueError, match=r"grid: a 64\^3 field .* lower grid"):
        distill(tiny, model=model, grid=64)
    monkeypatch.undo()
    monkeypatch.setattr(model.model, "latent_format", comfy.latent_formats.Wan21())
    with pytest.raises(ValueError, match="model: Wan21 latents have 5 dimensions"):
        distill(tiny, model=model)
    monkeypatch.undo()
    other = tiny["mod"].Field3D(tiny["mod"].LatentField(4, 16), None, 8, 1, PROMPT)
    with pytest.raises(ValueError, match="field: it has 16 latent channels"):
        distill(tiny, model=model, field=other)
    assert calls == []


def glb(path):
    """(header, JSON chunk) of a GLB file, checking the container's lengths."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    size, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    doc = json.loads(data[20:20 + size])
    bsize, bkind = struct.unpack_from("<II", data, 20 + size)
    assert bkind == 0x004E4942 and 28 + size + bsize == len(data)
    return doc


def test_workflow_turntable_and_glb(host):
    g = tiny_graph(host.ckpt)
    g["distill"] = {"class_type": "NegGuideDistill3D", "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1],
                                                                  **SETTINGS, "steps": 2}}
    g["turn"] = {"class_type": "NegGuideRenderTurntable", "inputs": {"field": ["distill", 0], "vae": ["ckpt", 2],
                                                                     "views": 4, "elevation": 15.0, "size": 0}}
    g["mesh"] = {"class_type": "NegGuideFieldToMesh", "inputs": {"field": ["distill", 0], "voxel_opacity": 0.3}}
    g["save"] = {"class_type": "SaveGLB", "inputs": {"mesh": ["mesh", 0], "filename_prefix": "negguide_test/field"}}
    out = host.execute(g, ["turn", "mesh"])
    images, mask = out["turn"]
    assert images.shape == (4, 64, 64, 3) and mask.shape == (4, 64, 64)
    assert torch.isfinite(images).all() and 0 <= mask.min() and mask.max() <= 1
    assert mask[:, 32, 32].min() > mask[:, 0, 0].max()  # the object is in the middle
    mesh = out["mesh"][0]
    verts, faces = mesh.vertices, mesh.faces
    assert verts.shape[0] == 1 and verts.shape[2] == 3 and faces.shape[2] == 3 and faces.shape[1] > 0
    assert int(faces.max()) < verts.shape[1] and float(verts.abs().max()) <= 1.0
    files = sorted((host.tmp / "output" / "negguide_test").glob("field_*.glb"))
    doc = glb(files[-1])
    position = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    indices = doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]
    assert position["count"] == verts.shape[1] and indices["count"] == 3 * faces.shape[1]
    assert math.isclose(max(position["max"]), float(verts.max()), rel_tol=1e-6)


def test_progress_bar_shows_a_rotating_preview(tiny, monkeypatch):
    import comfy.utils
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod
    monkeypatch.setattr(latent_preview.args, "preview_method", LatentPreviewMethod.Latent2RGB)
    seen = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None:
                        seen.append((value, total, preview)))
    distill(tiny, steps=3, preview_every=2)
    assert [(v, t) for v, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    shown = [p for _, _, p in seen]
    assert shown[1] is None and all(p[0] == "JPEG" and p[1].size == (8, 8) for p in (shown[0], shown[2]))
    assert list(shown[0][1].getdata()) != list(shown[2][1].getdata())  # another azimuth of a field that moved
