"""Isosurface of a density grid by naive surface nets (Gibson, "Constrained elastic surface nets", 1998).

One vertex per grid cell that the surface crosses, at the mean of the cell's edge crossings (linear
interpolation), and one quad (two triangles) per grid edge that crosses the level, joining the four cells
around that edge. The result is watertight wherever the surface stays inside the grid, needs no case tables,
and vectorises in numpy. Triangles wind counter-clockwise seen from outside (the low-density side).
"""
import numpy as np

# the 12 edges of a unit cell as (corner offset, axis)
_EDGES = [(o, a) for a in range(3) for o in np.ndindex(2, 2, 2) if o[a] == 0]


def surface_nets(volume, level: float, bound: float = 1.0):
    """(vertices [V, 3] float32 in world (x, y, z), faces [F, 3] int64) of {volume = level}, volume [R, R, R]
    indexed (z, y, x) over [-bound, bound]^3 (LatentField.density_grid()). Empty arrays if nothing crosses."""
    v = np.asarray(volume, dtype=np.float64) - level
    if v.ndim != 3 or min(v.shape) < 2:
        raise ValueError(f"volume: expected a 3-D grid of at least 2^3 values, got shape {v.shape}")
    inside = v > 0
    n = np.array(v.shape) - 1
    total, count = np.zeros((*n, 3)), np.zeros(tuple(n))
    for o, a in _EDGES:  # accumulate edge crossings per cell
        s0 = tuple(slice(o[k], o[k] + n[k]) for k in range(3))
        s1 = tuple(slice(o[k] + (k == a), o[k] + (k == a) + n[k]) for k in range(3))
        v0, v1 = v[s0], v[s1]
        hit = (v0 > 0) != (v1 > 0)
        t = np.where(hit, v0 / np.where(hit, v0 - v1, 1.0), 0.0)
        point = np.broadcast_to(np.array(o, float), (*n, 3)).copy()
        point[..., a] += t
        total += np.where(hit[..., None], point, 0.0)
        count += hit
    active = count > 0
    index = np.full(tuple(n), -1, np.int64)
    index[active] = np.arange(active.sum())
    cells = np.argwhere(active)
    verts = cells + total[active] / count[active][:, None]
    faces = []
    for a in range(3):  # grid edges along axis a with a crossing; their 4 neighbour cells form a quad
        b, c = (a + 1) % 3, (a + 2) % 3
        lo = inside[tuple(slice(0, -1) if k == a else slice(None) for k in range(3))]
        hi = inside[tuple(slice(1, None) if k == a else slice(None) for k in range(3))]
        p = np.argwhere(lo != hi)
        p = p[(p[:, b] > 0) & (p[:, c] > 0) & (p[:, b] < n[b]) & (p[:, c] < n[c])]
        eb, ec = np.eye(3, dtype=np.int64)[b], np.eye(3, dtype=np.int64)[c]
        quad = np.stack([index[tuple((p - d).T)] for d in (eb + ec, ec, 0 * eb, eb)], 1)
        flip = hi[tuple(p.T)]  # (b, c) loop winds about +a; flip where the outside (low density) is at -a
        quad[flip] = quad[flip][:, ::-1]
        faces.append(np.concatenate([quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]]))
    faces = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    # (z, y, x) index space -> world (x, y, z): swapping two axes mirrors, so reverse the winding too
    world = (verts[:, ::-1] * (2.0 * bound / n[::-1]) - bound).astype(np.float32)
    return world, faces[:, ::-1].copy()
