"""Measure score clipping (guiders/score_clip.py) on Perp-Neg with exact Gaussian-mixture denoisers.

2-D mixture, std 0.5 per mode: A (-3, 0) and B (3, 0) are the positive prompt, B and C (0, 4) the
negative one, D (0, -4) neither; the empty prompt is all four. Perp-Neg (cfg s, negative weight 1.5)
(w = 1.5) and plain CFG (w = 0) sample with and without a clip schedule, and we report where the samples land:
  in_pos   share within 3 std of A or B (what the positive asks for)
  in_C     share within 3 std of C (the negative-only mode)
  spread   mean distance to the nearest positive mode, over the samples that landed there,
           divided by the true value (the mean of a 2-D std-0.5 Gaussian's radius, 0.627); < 1 = collapsed
  median   median distance of all samples to their nearest positive mode (lower = closer to the data)
  mean     the same, mean (dominated by samples thrown far off the data)
Run: python scripts/score_clip_gmm.py   (CPU, a few seconds)
"""
import importlib.util
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


# the pack as ComfyUI loads it (a package from its folder); the repo root never goes on sys.path
_spec = importlib.util.spec_from_file_location("negguide", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
sys.modules["negguide"] = _pack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pack)
from negguide.guiders.perp_neg import PerpNeg  # noqa: E402
from negguide.guiders.score_clip import ScoreClip  # noqa: E402
from negguide.lab.gmm import SAMPLERS, GaussianMixture, guided_model, karras_sigmas, prior_noise  # noqa: E402

MEANS = [(-3.0, 0.0), (3.0, 0.0), (0.0, 4.0), (0.0, -4.0)]
STD = 0.5
EMPTY = GaussianMixture(MEANS, STD, [1, 1, 1, 1])
POS, NEG = EMPTY.subset([0, 1]), EMPTY.subset([1, 2])
TRUE_RADIUS = STD * (torch.pi / 2) ** 0.5


def guided(scale, weight, clip, sigmas):
    """The Perp-Neg guider's technique (optionally inside ScoreClip), driven the way the host drives it."""
    technique = PerpNeg([("negative", weight, "negative")])
    if clip:
        technique = ScoreClip(technique, *clip)
    denoisers = {"positive": POS.denoise, "empty": EMPTY.denoise, "negative": NEG.denoise}
    return guided_model(technique, denoisers, scale, sigmas)


def measure(scale, clip, sampler="euler", n=4000, steps=30, seed=0, weight=1.5):
    g = torch.Generator().manual_seed(seed)
    sigmas = karras_sigmas(steps)
    x = SAMPLERS[sampler](guided(scale, weight, clip, sigmas), prior_noise(n, 2, sigmas, generator=g), sigmas,
                          generator=g)
    dist = torch.cdist(x, torch.tensor(MEANS, dtype=x.dtype))
    near_pos = dist[:, :2].min(1).values
    in_pos = near_pos < 3 * STD
    return {"in_pos": in_pos.double().mean().item(), "in_C": (dist[:, 2] < 3 * STD).double().mean().item(),
            "spread": (near_pos[in_pos].mean() / TRUE_RADIUS).item() if in_pos.any() else float("nan"),
            "median": near_pos.median().item(), "mean": near_pos.mean().item(), "finite": bool(torch.isfinite(x).all())}


CLIPS = [("off", None), ("2 -> 8 (paper, SD)", (2.0, 8.0)), ("0.5 -> 2 (paper, DeepFloyd)", (0.5, 2.0)),
         ("1 -> 1", (1.0, 1.0))]


def main():
    print(f"| sampler | w | cfg | clip psi | in_pos | in_C | spread | median | mean |\n|{'---|' * 9}")
    for sampler in ("euler", "euler_ancestral"):
        for weight in (0.0, 1.5):
            for scale in (3.0, 7.5, 15.0):
                for name, clip in CLIPS:
                    m = measure(scale, clip, sampler, weight=weight)
                    print(f"| {sampler} | {weight} | {scale} | {name} | {m['in_pos']:.3f} | {m['in_C']:.3f} | "
                          f"{m['spread']:.3f} | {m['median']:.2f} | {m['mean']:.2f} |")


if __name__ == "__main__":
    main()
