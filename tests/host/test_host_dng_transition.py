"""The transition guiders/dng.py tracks is exactly what ComfyUI's own ancestral samplers draw (VE and RF)."""
import types

import torch

from negguide.guiders.dng import transition


class ConstantModel:
    """What sample_euler_ancestral needs from a model: a call returning D, and the model_sampling it checks."""

    def __init__(self, d, sampling):
        self.d = d
        self.inner_model = types.SimpleNamespace(inner_model=types.SimpleNamespace(model_sampling=sampling))

    def __call__(self, x, sigma, **kwargs):
        return self.d


def test_one_ancestral_step_is_a_x_plus_k_d_plus_sqrt_v_noise(host):
    import comfy.k_diffusion.sampling as ks
    import comfy.model_sampling as ms

    gen = torch.Generator().manual_seed(0)
    x, d, z = (torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    cases = (("ve", ms.ModelSamplingDiscrete(), (14.6, 9.0), (2.0, 1.5), (0.3, 0.1)),
             ("const", ms.CONST(), (1.0, 0.9), (0.8, 0.5), (0.3, 0.05)))
    for kind, sampling, *steps in cases:
        for sp, sn in steps:
            sigmas = torch.tensor([sp, sn], dtype=torch.float64)
            out = ks.sample_euler_ancestral(ConstantModel(d, sampling), x, sigmas, disable=True,
                                            noise_sampler=lambda a, b: z)
            a, k, v = transition(sigmas[:1], sigmas[1:], kind)
            assert torch.allclose(out, a * x + k * d + v.sqrt() * z, atol=1e-10), (kind, sp, sn)
