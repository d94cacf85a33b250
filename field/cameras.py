"""Pinhole cameras on a sphere around the field, in the view node's convention (guiders/views.py).

World frame: y up; the object's FRONT faces +z. A camera at azimuth a, elevation e, distance r sits at

    position = r (cos e sin a,  sin e,  cos e cos a)

and looks at the origin, so azimuth 0 sees the +z face (front), 90 the +x face (side), 180 the -z face (back),
270 the -x face (the other side); positive elevation looks from above. The camera's right vector
(cos a, 0, -sin a) stays horizontal, so the frame is defined even straight overhead. Image row 0 is the top,
and at azimuth 0 the image's right is world +x.
"""
from typing import NamedTuple

import torch


class Cameras(NamedTuple):
    azimuth: torch.Tensor     # [B] degrees, 0 = front
    elevation: torch.Tensor   # [B] degrees, positive = from above
    radius: torch.Tensor      # [B] distance to the origin (the field spans [-bound, bound]^3)
    fov: torch.Tensor         # [B] vertical field of view, degrees


def make_cameras(azimuth, elevation=0.0, radius=3.0, fov=45.0, dtype=torch.float32, device=None) -> Cameras:
    """Cameras from numbers or sequences (broadcast to one batch)."""
    values = [torch.as_tensor(v, dtype=dtype, device=device).flatten() for v in (azimuth, elevation, radius, fov)]
    values = torch.broadcast_tensors(*values)
    if not all(torch.isfinite(v).all() for v in values):
        raise ValueError("cameras: azimuth, elevation, radius and fov must be finite numbers")
    if (values[1].abs() > 90).any():
        raise ValueError("elevation: must be within [-90, 90] degrees (90 = straight down from above)")
    if not ((values[3] > 0) & (values[3] < 180)).all():
        raise ValueError("fov: the field of view must be between 0 and 180 degrees")
    return Cameras(*values)


def turntable(views: int, elevation=15.0, radius=3.0, fov=45.0, start=0.0, **kw) -> Cameras:
    """`views` cameras evenly spaced over 360 degrees of azimuth, starting at `start` (0 = front)."""
    return make_cameras([start + 360.0 * i / views for i in range(views)], elevation, radius, fov, **kw)


def sample_cameras(batch: int, generator: torch.Generator, elevation_range=(-10.0, 45.0), radius_range=(3.0, 3.0),
                   fov_range=(45.0, 45.0), dtype=torch.float32, device=None) -> Cameras:
    """Random training cameras: azimuth uniform on [-180, 180), elevation, radius and fov uniform on their ranges.
    All draws come from `generator` (on the CPU, so a seed gives the same cameras on every device)."""
    u = torch.rand(4, batch, generator=generator, dtype=torch.float64)
    lo, hi = torch.tensor([(-180.0, 180.0), elevation_range, radius_range, fov_range], dtype=torch.float64).unbind(1)
    v = lo[:, None] + u * (hi - lo)[:, None]
    return make_cameras(*v, dtype=dtype, device=device)


def positions(cams: Cameras) -> torch.Tensor:
    """Camera centres [B, 3]."""
    a, e = torch.deg2rad(cams.azimuth), torch.deg2rad(cams.elevation)
    return cams.radius[:, None] * torch.stack([e.cos() * a.sin(), e.sin(), e.cos() * a.cos()], -1)


def frames(cams: Cameras):
    """(forward, right, up), each [B, 3] unit vectors: forward points at the origin."""
    a, e = torch.deg2rad(cams.azimuth), torch.deg2rad(cams.elevation)
    forward = -torch.stack([e.cos() * a.sin(), e.sin(), e.cos() * a.cos()], -1)
    right = torch.stack([a.cos(), torch.zeros_like(a), -a.sin()], -1)
    return forward, right, torch.linalg.cross(right, forward)


def rays(cams: Cameras, height: int, width: int):
    """Ray origins and unit directions through the pixel centres, each [B, H, W, 3]; square pixels."""
    forward, right, up = frames(cams)
    dtype, device = forward.dtype, forward.device
    half = torch.tan(torch.deg2rad(cams.fov) / 2)[:, None, None, None]             # [B,1,1,1]
    v = 1 - (torch.arange(height, dtype=dtype, device=device) + 0.5) * 2 / height   # +1 at the top
    u = ((torch.arange(width, dtype=dtype, device=device) + 0.5) * 2 / width - 1) * (width / height)
    d = (forward[:, None, None] + half * (u[None, None, :, None] * right[:, None, None]
                                          + v[None, :, None, None] * up[:, None, None]))
    d = d / d.norm(dim=-1, keepdim=True)
    return positions(cams)[:, None, None].expand_as(d), d

