"""A latent radiance field on a voxel grid, rendered by alpha compositing straight into a diffusion model's latent space.

The setup of Score Jacobian Chaining (Wang et al., "Score Jacobian Chaining: Lifting Pretrained 2D Diffusion Models
for 3D Generation", CVPR 2023), also used by Hong et al. (2023) for D-SDS: a density and C latent channels stored on
an R^3 grid over [-bound, bound]^3, sampled trilinearly, and composited along each ray (NeRF quadrature):

    sigma_i = softplus(raw_i) / voxel,   alpha_i = 1 - exp(-sigma_i delta),   T_i = exp(-sum_{j<i} sigma_j delta)
    latent  = sum_i T_i alpha_i c_i + (1 - opacity) bg(d),                       opacity = sum_i T_i alpha_i

with a fixed number of samples per ray spread evenly over the ray's chord through the box (delta = chord / samples).
Dividing by the voxel spacing makes softplus(raw) the optical depth of one voxel step, so raw = 0 means a voxel
absorbs half the light whatever R is. The emptiness regulariser is SJC's: mean log(1 + scale * w) over the
compositing weights w, which keeps empty space empty without flattening the object.
"""
import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from . import cameras as cam


class Render(NamedTuple):
    latent: torch.Tensor    # [B, C, H, W]
    opacity: torch.Tensor   # [B, 1, H, W]
    weights: torch.Tensor   # [B, H, W, N] compositing weights (for the emptiness regulariser)


def default_samples(resolution: int) -> int:
    """About one sample per voxel along the box diagonal."""
    return math.ceil(math.sqrt(3.0) * resolution)


def box_chord(origins, dirs, bound: float):
    """Entry distance t0 >= 0 and chord length (0 for rays that miss) of rays through [-bound, bound]^3, each [...]."""
    d = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)  # axis-parallel rays: slabs go to +-inf
    ta, tb = (-bound - origins) / d, (bound - origins) / d
    t0 = torch.minimum(ta, tb).amax(-1).clamp(min=0.0)
    t1 = torch.maximum(ta, tb).amin(-1)
    return t0, (t1 - t0).clamp(min=0.0)


def render_volume(density, latent, background, origins, dirs, samples: int, bound: float = 1.0,
                  background_dir=None, offsets=None) -> Render:
    """Functional renderer (differentiable in every tensor argument).

    density [1, 1, R, R, R] raw (pre-softplus), latent [1, C, R, R, R], grids indexed (z, y, x) as grid_sample
    reads them; background [C]; background_dir [C, 3] or None (a linear term in the ray direction);
    origins/dirs [B, H, W, 3] with unit dirs; offsets [B, H, W] in [0, 1) jitter the samples (stratified), None = midpoints."""
    B, H, W, _ = dirs.shape
    R, C = density.shape[-1], latent.shape[1]
    t0, chord = box_chord(origins, dirs, bound)
    off = 0.5 if offsets is None else offsets[..., None]
    steps = torch.arange(samples, dtype=dirs.dtype, device=dirs.device)
    t = t0[..., None] + (steps + off) * (chord / samples)[..., None]                     # [B, H, W, N]
    points = origins[..., None, :] + t[..., None] * dirs[..., None, :]                  # [B, H, W, N, 3]
    grid = (points / bound).clamp(-1.0, 1.0).reshape(1, B * H, W, samples, 3)
    vals = F.grid_sample(torch.cat([density, latent], 1), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).reshape(1 + C, B, H, W, samples)
    tau = F.softplus(vals[0]) * ((R - 1) / (2.0 * bound)) * (chord / samples)[..., None]  # optical depth per sample
    acc = torch.cumsum(tau, -1)
    weights = torch.exp(tau - acc) * -torch.expm1(-tau)                                 # T_i alpha_i
    opacity = weights.sum(-1)                                                           # [B, H, W]
    color = (weights * vals[1:]).sum(-1)                                                # [C, B, H, W]
    bg = background.reshape(C, 1, 1, 1)
    if background_dir is not None:
        bg = bg + torch.einsum("ck,bhwk->cbhw", background_dir, dirs)
    out = color + (1.0 - opacity) * bg
    return Render(out.permute(1, 0, 2, 3), opacity[:, None], weights)


def emptiness(weights: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """SJC's emptiness loss: mean log(1 + scale * w) over the compositing weights (concave, so it pushes
    faint weights to zero far harder than it shrinks solid surfaces)."""
    return torch.log1p(scale * weights).mean()


class LatentField(torch.nn.Module):
    """Density + `channels` latent channels on a resolution^3 grid over [-bound, bound]^3, plus a learned background.

    Init: a soft Gaussian blob of density at the centre (per-voxel optical depth `blob` at the centre, falling
    with std `blob_radius`), near-empty space elsewhere, latent channels ~ N(0, latent_std^2) from `seed`,
    background 0. A fresh field therefore renders a finite, partly opaque blob in front of the background."""

    def __init__(self, resolution: int = 64, channels: int = 4, bound: float = 1.0, seed: int = 0,
                 directional_background: bool = False, blob: float = 0.5, blob_radius: float = 0.35, latent_std: float = 0.05):
        super().__init__()
        if resolution < 2:
            raise ValueError(f"grid resolution: {resolution} is too small; use at least 2 (SJC uses 100)")
        if channels < 1:
            raise ValueError(f"channels: {channels}; the field needs the model's latent channel count (4 for SD1.5/SDXL)")
        self.resolution, self.channels, self.bound = int(resolution), int(channels), float(bound)
        axis = torch.linspace(-bound, bound, resolution)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        depth = blob * torch.exp(-(x * x + y * y + z * z) / (2 * blob_radius ** 2))
        floor = 0.01 / default_samples(resolution)  # a whole ray through empty space keeps ~99% of its light
        raw = torch.log(torch.expm1(depth.clamp(min=floor)))                              # inverse softplus
        gen = torch.Generator().manual_seed(int(seed))
        self.density = torch.nn.Parameter(raw[None, None])
        self.latent = torch.nn.Parameter(latent_std * torch.randn(1, channels, *raw.shape, generator=gen))
        self.background = torch.nn.Parameter(torch.zeros(channels))
        self.background_dir = torch.nn.Parameter(torch.zeros(channels, 3)) if directional_background else None

    def forward(self, cams: cam.Cameras, height: int, width: int, samples: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> Render:
        """Render cameras at height x width. generator: stratified jitter drawn from it (CPU), None = midpoints."""
        origins, dirs = cam.rays(cams, height, width)
        return self.render_rays(origins, dirs, samples, generator)

    def render_rays(self, origins, dirs, samples=None, generator=None) -> Render:
        p = self.density
        origins, dirs = origins.to(p), dirs.to(p)
        offsets = None
        if generator is not None:
            offsets = torch.rand(dirs.shape[:-1], generator=generator, dtype=p.dtype).to(p.device)
        return render_volume(p, self.latent, self.background, origins, dirs, samples or default_samples(self.resolution),
                             self.bound, self.background_dir, offsets)

    def sample(self, points: torch.Tensor):
        """(sigma per unit length [...], latent [..., C]) at world points [..., 3]."""
        shape = points.shape[:-1]
        grid = (points.to(self.density) / self.bound).clamp(-1, 1).reshape(1, 1, 1, -1, 3)
        vals = F.grid_sample(torch.cat([self.density, self.latent], 1), grid, align_corners=True, padding_mode="border")
        vals = vals.reshape(1 + self.channels, -1)
        return (F.softplus(vals[0]) * self.voxels_per_unit).reshape(shape), vals[1:].T.reshape(*shape, self.channels)

    @property
    def voxels_per_unit(self) -> float:
        return (self.resolution - 1) / (2.0 * self.bound)

    def density_grid(self) -> torch.Tensor:
        """sigma per unit length on the grid points, [R, R, R] indexed (z, y, x)."""
        return F.softplus(self.density[0, 0]) * self.voxels_per_unit

    def surface_level(self) -> float:
        """The default isosurface: the density at which one voxel step absorbs half the light (raw = 0)."""
        return math.log(2.0) * self.voxels_per_unit


def estimate_bytes(resolution: int, channels: int, batch: int, height: int, width: int, samples: Optional[int] = None) -> int:
    """Rough peak memory in bytes of one fp32 render + backward + Adam step, without torch's own ~90 MiB.
    Fitted to the peak RSS of CPU runs (scripts/bench_field.py, grids 50^3 and 100^3, 32 to 96 pixels, C = 4
    and 16): about 6 floats per grid value (parameter, gradient, two Adam moments, the concatenated copy the
    sampler reads and its gradient) and 3.5 C + 24 floats per ray sample (what autograd keeps plus the backward
    pass's temporaries). For a clear error before training starts; not a guarantee."""
    samples = samples or default_samples(resolution)
    grid = 6 * (1 + channels) * resolution ** 3
    per_sample = 3.5 * channels + 24
    return int(4 * (grid + batch * height * width * samples * per_sample))
