"""The latent voxel field: renderer gradients, the camera convention of the view node, determinism, regulariser, mesh."""
import math

import numpy as np
import pytest
import torch

from negguide.field import cameras as cam
from negguide.field.grid import LatentField, emptiness, estimate_bytes, render_volume
from negguide.field.mesh import surface_nets
from negguide.guiders.views import view_label


def test_renderer_gradcheck_fp64():
    gen = torch.Generator().manual_seed(0)
    density = torch.randn(1, 1, 4, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    latent = torch.randn(1, 2, 4, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    background = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    background_dir = torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    origins, dirs = cam.rays(cam.make_cameras([30.0], 20.0, 2.5, 50.0, dtype=torch.float64), 3, 3)

    def f(d, lat, bg, bgd):
        out = render_volume(d, lat, bg, origins, dirs, 6, 1.0, bgd)
        return out.latent, out.opacity

    assert torch.autograd.gradcheck(f, (density, latent, background, background_dir))


def test_fresh_field_renders_a_finite_blob():
    r = LatentField(16, 4, seed=3)(cam.turntable(4), 16, 16)
    assert r.latent.shape == (4, 4, 16, 16) and r.opacity.shape == (4, 1, 16, 16)
    assert torch.isfinite(r.latent).all()
    centre, corner = r.opacity[:, 0, 8, 8], r.opacity[:, 0, 0, 0]
    assert (centre > 0.5).all() and (corner < 0.05).all()


# channel k of the test field marks one face of a cube: +z, +x, -z, -x, +y
FACES = ("+z", "+x", "-z", "-x", "+y")


def face_field(resolution=24):
    field = LatentField(resolution, len(FACES), blob=0.0)
    ax = torch.linspace(-1, 1, resolution)
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    with torch.no_grad():
        field.density.copy_(torch.where((x.abs() < 0.55) & (y.abs() < 0.55) & (z.abs() < 0.55), 8.0, -12.0))
        # each point gets the face it lies closest to: a one-hot per face region of the cube
        coords = torch.stack([z, x, -z, -x, y])
        field.latent.copy_((coords == coords.max(0).values).float()[None])
    return field


@pytest.mark.parametrize("azimuth,face", [(0, "+z"), (90, "+x"), (180, "-z"), (270, "-x")])
def test_camera_sees_the_face_the_view_node_names(azimuth, face):
    r = face_field()(cam.make_cameras([azimuth], 0.0), 16, 16).latent[0, :, 6:10, 6:10].mean((1, 2))
    seen = FACES[int(r.argmax())]
    assert seen == face and r.max() > 0.9
    label = view_label(azimuth)
    assert label == {"+z": "front", "-z": "back", "+x": "side", "-x": "side"}[seen]


def test_image_orientation_and_elevation():
    field = face_field()
    top = field(cam.make_cameras([0.0], 89.0), 16, 16).latent[0, :, 6:10, 6:10].mean((1, 2))
    assert FACES[int(top.argmax())] == "+y"
    with torch.no_grad():  # latent channels = world (x, y, z) of each point
        ax = torch.linspace(-1, 1, field.resolution)
        field.latent[0, :3] = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij")[::-1])
    # the image's right is world +x at azimuth 0 and -z at azimuth 90; row 0 is the top (+y)
    front, side = field(cam.make_cameras([0.0, 90.0], 0.0), 16, 16).latent[:, :, 4:12, 4:12]
    assert (front[0].diff(dim=1) > 0).all() and (front[1].diff(dim=0) < 0).all()
    assert (side[2].diff(dim=1) < 0).all() and (side[1].diff(dim=0) < 0).all()


def test_memory_estimate_covers_what_autograd_keeps():
    field, saved = LatentField(12, 4), []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        field(cam.turntable(2), 24, 24)
    kept = sum(saved) + 4 * sum(p.numel() * p.element_size() for p in field.parameters())
    assert kept <= estimate_bytes(12, 4, 2, 24, 24) <= 4 * kept  # the rest: the backward pass's temporaries


def test_camera_frames_are_orthonormal_and_look_at_the_origin():
    c = cam.sample_cameras(16, torch.Generator().manual_seed(1), elevation_range=(-90.0, 90.0), dtype=torch.float64)
    fwd, right, up = cam.frames(c)
    m = torch.stack([fwd, right, up], 1)
    assert torch.allclose(m @ m.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(16, 3, 3), atol=1e-12)
    assert torch.allclose(cam.positions(c) + c.radius[:, None] * fwd, torch.zeros(16, 3, dtype=torch.float64), atol=1e-12)
    o, d = cam.rays(c, 5, 5)
    assert torch.allclose(d[:, 2, 2], fwd, atol=1e-12)   # the centre pixel's ray goes through the origin


def test_bad_cameras_are_rejected():
    with pytest.raises(ValueError, match="elevation"):
        cam.make_cameras([0.0], 95.0)
    with pytest.raises(ValueError, match="fov"):
        cam.make_cameras([0.0], 0.0, fov=0.0)


def train(seed, camera_seed, steps=4):
    field = LatentField(8, 4, seed=seed)
    opt = torch.optim.Adam(field.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(camera_seed)
    for _ in range(steps):
        r = field(cam.sample_cameras(2, gen), 8, 8, generator=gen)
        loss = (r.latent - 0.5).pow(2).mean() + emptiness(r.weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in field.parameters()])


def test_same_seed_same_field():
    a, b = train(1, 2), train(1, 2)
    assert torch.equal(a, b)
    assert not torch.equal(a, train(1, 3)) and not torch.equal(a, train(4, 2))


def test_emptiness_clears_faint_density():
    field = LatentField(12, 4, seed=0)
    cams = cam.turntable(4)
    before = field(cams, 12, 12).opacity.mean().item()
    opt = torch.optim.Adam(field.parameters(), lr=0.1)
    for _ in range(20):
        loss = emptiness(field(cams, 12, 12).weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert field(cams, 12, 12).opacity.mean().item() < 0.5 * before
    assert emptiness(torch.zeros(3, 4)).item() == 0.0


def test_mesh_of_a_sphere_is_closed_and_outward():
    field = LatentField(32, 4)
    ax = torch.linspace(-1, 1, 32)
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    with torch.no_grad():
        field.density.copy_(4.0 * (0.6 - (x * x + y * y + z * z).sqrt()) / 0.6)  # raw = 0 (the default level) at r = 0.6
    verts, faces = surface_nets(field.density_grid().detach(), field.surface_level(), field.bound)
    assert np.allclose(np.linalg.norm(verts, axis=1), 0.6, atol=0.03)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    assert set(np.unique(edges, axis=0, return_counts=True)[1]) == {2}            # every edge joins two triangles
    p = verts[faces].astype(np.float64)
    volume = np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6  # > 0: normals point outward
    assert volume == pytest.approx(4 / 3 * math.pi * 0.6 ** 3, rel=0.05)
    empty_v, empty_f = surface_nets(np.zeros((4, 4, 4)), 1.0)
    assert empty_v.shape == (0, 3) and empty_f.shape == (0, 3)
