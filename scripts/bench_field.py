"""Seconds per render + backward + Adam step of the latent voxel field (field/grid.py), and its memory.

    python scripts/bench_field.py [--device cpu|cuda] [--threads N] [--rounds 5]

Sizes: the CI test's (16^3 grid, 4 cameras at 16x16) and SJC's (100^3 grid, 1 camera at 64x64), 4 latent channels.
"kept" is what autograd keeps for the backward pass (summed over saved tensors) plus the grid, its gradient and
Adam's two moments; "peak" is the CUDA allocator's peak, or on the CPU the growth of the process's peak RSS
(each size runs in its own process so that peaks do not mask each other). No ComfyUI needed.
"""
import argparse
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))  # conftest.load_pack; never the repo root

SIZES = (("ci", 16, 4, 16), ("sjc", 100, 1, 64))  # name, grid resolution, cameras per step, render size


def bench(resolution, batch, size, device, rounds):
    import torch

    from negguide.field import cameras as cam
    from negguide.field.grid import LatentField, default_samples, emptiness, estimate_bytes

    field = LatentField(resolution, 4).to(device)
    opt = torch.optim.Adam(field.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    times = []
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(rounds + 1):  # the first round warms up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            r = field(cam.sample_cameras(batch, gen, device=device), size, size, generator=gen)
            loss = r.latent.square().mean() + emptiness(r.weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    kept = sum(saved) / (rounds + 1) + 4 * sum(p.numel() * p.element_size() for p in field.parameters())
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    return dict(sec=statistics.median(times), kept=kept, peak=peak, est=estimate_bytes(resolution, 4, batch, size, size),
                samples=default_samples(resolution))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one size in this process, print JSON
    opts = ap.parse_args()
    from conftest import load_pack

    load_pack()
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.only:
        name, resolution, batch, size = next(s for s in SIZES if s[0] == opts.only)
        print(json.dumps(bench(resolution, batch, size, opts.device, opts.rounds)))
        return
    print(f"device {opts.device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    for name, resolution, batch, size in SIZES:
        out = subprocess.run([sys.executable, __file__, "--only", name, *sys.argv[1:]], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.splitlines()[-1])
        print(f"{name:4s} grid {resolution}^3, {batch} x {size}x{size}, {m['samples']} samples/ray: {m['sec']:.3f} s/step, "
              f"kept {m['kept'] / 2**20:.0f} MiB, peak {m['peak'] / 2**20:.0f} MiB, estimate_bytes {m['est'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
