"""DNS math (Desai & Vasconcelos 2024, eq. 19-20), no host."""
import pytest
import torch

from negguide.guiders.dns import cfg_for_dns, dns


def preds(dtype=torch.float32, batch=3):
    gen = torch.Generator().manual_seed(0)
    d_empty = torch.randn(batch, 4, 8, 8, generator=gen).to(dtype)
    d_prompt = torch.randn(batch, 4, 8, 8, generator=gen).to(dtype)
    return d_empty, d_prompt


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0, 7.5, 20.0])
def test_dns_is_two_term_cfg_with_swapped_roles_at_s_plus_1(scale):
    d_empty, d_prompt = preds()
    cfg = cfg_for_dns(scale)
    core_cfg = d_prompt + (d_empty - d_prompt) * cfg  # ComfyUI's cfg_function with cond="" and uncond=p
    torch.testing.assert_close(dns(d_empty, d_prompt, scale), core_cfg, rtol=1e-5, atol=1e-5)


def test_dns_formula_and_direction():
    d_empty, d_prompt = preds()
    out = dns(d_empty, d_prompt, 2.0)
    torch.testing.assert_close(out, 3 * d_empty - 2 * d_prompt)
    # moves away from the prompt: farther from D_p than the unconditional prediction is
    assert ((out - d_prompt).flatten(1).norm(dim=1) > (d_empty - d_prompt).flatten(1).norm(dim=1)).all()


def test_scale_zero_is_the_unconditional_prediction_exactly():
    d_empty, d_prompt = preds()
    assert torch.equal(dns(d_empty, d_prompt, 0.0), d_empty)
    assert cfg_for_dns(0.0) == 1.0  # ComfyUI's cfg-1 shortcut then skips the prompt branch entirely


def test_per_sample_independent_of_the_rest_of_the_batch():
    d_empty, d_prompt = preds(batch=4)
    full = dns(d_empty, d_prompt, 5.0)
    for i in range(4):
        assert torch.equal(full[i:i + 1], dns(d_empty[i:i + 1], d_prompt[i:i + 1], 5.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_keeps_dtype_and_stays_finite(dtype):
    d_empty, d_prompt = preds(dtype)
    out = dns(d_empty, d_prompt, 7.5)
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = dns(d_empty.float(), d_prompt.float(), 7.5).to(dtype)
    assert torch.equal(out, ref)  # computed in fp32, rounded once
