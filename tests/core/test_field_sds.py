"""Score distillation residual: eps/flow agreement, DreamFusion's weighting, D-SDS clipping, analytic convergence."""
import pytest
import torch

from negguide.field import cameras as cam
from negguide.field import sds
from negguide.field.grid import LatentField
from negguide.guiders.convert import sigma_like

TAU = 0.05  # the test data: x0 ~ N(target, TAU^2 I), so the exact denoiser is a Gaussian posterior mean


def denoiser(x, sigma, prediction, target):
    """Exact posterior mean E[x0 | x] for x0 ~ N(target, TAU^2), written as each parametrisation's model would see it."""
    s = sigma_like(sigma, x).to(x.dtype)
    ve, x_ve = (s / (1 - s), x / (1 - s)) if prediction == "flow" else (s, x)
    k = TAU ** 2 / (TAU ** 2 + ve ** 2)
    return target + k * (x_ve - target)


@pytest.mark.parametrize("sigma_ve", [0.03, 0.7, 14.0])
def test_eps_and_flow_residuals_agree_for_the_same_ve_state(sigma_ve):
    gen = torch.Generator().manual_seed(0)
    x0, noise, target = (torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    s_flow = sigma_ve / (1 + sigma_ve)
    assert sds.sigma_ve(s_flow, "flow") == pytest.approx(sigma_ve)
    x_eps, x_flow = sds.noisy(x0, noise, sigma_ve, "eps"), sds.noisy(x0, noise, s_flow, "flow")
    assert torch.allclose(x_flow, x_eps / (1 + sigma_ve))      # the same state, scaled
    d_eps, d_flow = denoiser(x_eps, sigma_ve, "eps", target), denoiser(x_flow, s_flow, "flow", target)
    assert torch.allclose(d_eps, d_flow)                       # one data distribution, one posterior mean
    r_eps = sds.eps_prediction(x_eps, d_eps, sigma_ve, "eps") - noise
    r_flow = sds.eps_prediction(x_flow, d_flow, s_flow, "flow") - noise
    assert torch.allclose(r_eps, r_flow)
    for r, d, s, p in ((r_eps, d_eps, sigma_ve, "eps"), (r_flow, d_flow, s_flow, "flow"), (r_eps, d_eps, sigma_ve, "v")):
        assert torch.allclose(sds.residual(x0, d, s, p), r)      # (x0 - D) / sigma_ve, the noise drops out


def test_dreamfusion_weighting_is_the_vp_sigma_squared():
    gen = torch.Generator().manual_seed(1)
    x0, noise, d = (torch.randn(3, 4, 4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    alpha_bar = torch.tensor([0.9, 0.5, 0.01], dtype=torch.float64)
    sigma = ((1 - alpha_bar) / alpha_bar).sqrt()                 # VE sigma of each VP time
    x_vp = alpha_bar.sqrt()[:, None, None, None] * x0 + (1 - alpha_bar).sqrt()[:, None, None, None] * noise
    eps_hat = (x_vp - alpha_bar.sqrt()[:, None, None, None] * d) / (1 - alpha_bar).sqrt()[:, None, None, None]
    dreamfusion = (1 - alpha_bar)[:, None, None, None] * (eps_hat - noise)  # w(t) = sigma_t^2 = 1 - alpha_bar
    assert torch.allclose(sds.sds_gradient(x0, d, sigma, "eps", "dreamfusion"), dreamfusion)
    assert torch.allclose(sds.sds_gradient(x0, d, sigma, "eps", "sjc"), eps_hat - noise)


def test_clipping_follows_the_dsds_schedule_and_loss_gradient_is_g():
    x0 = torch.linspace(-1, 1, 50, dtype=torch.float64).reshape(1, 2, 5, 5).requires_grad_()
    d = torch.zeros_like(x0)
    g0 = sds.clip_residual(sds.residual(x0, d, 0.1, "eps"), 0, 10, 2.0, 8.0)
    g10 = sds.clip_residual(sds.residual(x0, d, 0.1, "eps"), 10, 10, 2.0, 8.0)
    assert g0.abs().max() == 2.0 and g10.abs().max() == 8.0 and torch.equal(g10, (x0 / 0.1).clamp(-8, 8))
    g = sds.sds_gradient(x0, d, 0.1, "eps", psi=3.0)
    assert g.abs().max() == 3.0
    sds.sds_loss(x0, g).sum().backward()
    assert torch.equal(x0.grad, g)


def test_bad_names_are_rejected():
    with pytest.raises(ValueError, match="prediction"):
        sds.sigma_ve(0.5, "x0")
    with pytest.raises(ValueError, match="weighting"):
        sds.weight(0.5, "magic")


def target_field(resolution):
    """A box with a latent that varies with position (so every view differs), before a coloured background."""
    field = LatentField(resolution, 4)
    ax = torch.linspace(-1, 1, resolution)
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    with torch.no_grad():
        field.density.copy_(torch.where((x.abs() < 0.5) & (y.abs() < 0.4) & (z.abs() < 0.3), 2.0, -4.0))
        field.latent.copy_(torch.stack([x, y, z, x * z])[None])
        field.background.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))
    return field


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids contention on a shared machine and keeps the loop fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("prediction", ["eps", "flow"])
def test_sds_with_an_exact_denoiser_recovers_held_out_views(prediction, one_thread):
    """Every step: random cameras, render x0, noise it at a random time, denoise exactly (posterior mean of
    N(target render, TAU^2)), and descend the clipped SDS residual. Its mean is (1 - k)(x0 - target) / sigma_ve,
    zero only where the render equals the target, so the views never trained on must converge as well."""
    size, target, field = 16, target_field(16), LatentField(16, 4, seed=1)
    held_out = cam.turntable(8, elevation=20.0, start=22.5)

    def error():
        with torch.no_grad():
            return (field(held_out, size, size).latent - target(held_out, size, size).latent).pow(2).mean().item()

    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(field.parameters(), lr=0.05)
    start, steps = error(), 150
    for step in range(steps):
        cams = cam.sample_cameras(4, gen)
        x0 = field(cams, size, size).latent
        with torch.no_grad():
            t = sds.sample_t(4, gen)
            sigma = t if prediction == "flow" else t / (1 - t)
            x = sds.noisy(x0, torch.randn(x0.shape, generator=gen), sigma, prediction)
            d = denoiser(x, sigma, prediction, target(cams, size, size).latent)
        psi = sds.clip_threshold(step, steps - 1, 2.0, 8.0)
        loss = sds.sds_loss(x0, sds.sds_gradient(x0, d, sigma, prediction, "sjc", psi)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert error() < start / 10
