"""The analytic lab (docs/method.md, analytic validation) is itself right: exact denoisers obey Tweedie, posteriors are distributions,
the flow form is the VE form in disguise, and the samplers reach the data distribution."""
import torch

from negguide.lab import gmm as L

MIX = L.GaussianMixture([[-1.5, 0.0], [1.5, 0.0], [0.0, 6.0]], [0.5, 0.3, 0.7], [0.5, 0.3, 0.2])


def points(n=64, scale=3.0, seed=0):
    return scale * torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_denoiser_is_tweedie_of_the_exact_density():
    """D = x + sigma^2 grad log p_sigma(x) (VE) and D = (x + sigma^2 grad log p(x)) / (1 - sigma) (flow)."""
    for sigma in (0.05, 0.7, 3.0, 20.0):
        x = points().requires_grad_(True)
        score, = torch.autograd.grad(MIX.log_density(x, sigma).sum(), x)
        assert torch.allclose(MIX.denoise(x.detach(), sigma), x.detach() + sigma ** 2 * score, atol=1e-9)
    for sigma in (0.05, 0.5, 0.95):
        x = points().requires_grad_(True)
        xv, sv = L.to_ve(x, sigma, "const")
        log_p = MIX.log_density(xv, sv) - 2 * torch.log(torch.tensor(1 - sigma, dtype=torch.float64))
        score, = torch.autograd.grad(log_p.sum(), x)
        d = L.denoiser(MIX, "const")(x.detach(), torch.tensor(sigma, dtype=torch.float64))
        assert torch.allclose(d, (x.detach() + sigma ** 2 * score) / (1 - sigma), atol=1e-8)


def test_posteriors_are_distributions_and_subsets_renormalise():
    post = MIX.posterior(points(), 1.0)
    assert torch.allclose(post.sum(1), torch.ones(64, dtype=torch.float64))
    sub = MIX.subset([0, 1])
    assert torch.allclose(sub.weights, torch.tensor([0.625, 0.375], dtype=torch.float64))
    # P(k | x) within the subset equals the full posterior renormalised over the subset
    assert torch.allclose(sub.posterior(points(), 1.0), post[:, :2] / post[:, :2].sum(1, keepdim=True), atol=1e-12)
    assert torch.allclose(L.posterior_mass(MIX, [0, 1], points(), 1.0), post[:, :2].sum(1))


def test_denoiser_limits():
    x = points()
    assert torch.allclose(MIX.denoise(x, 1e-6), x, atol=1e-6)  # no noise: D is the point itself
    mean = (MIX.weights[:, None] * MIX.means).sum(0)
    assert torch.allclose(MIX.denoise(x * 0.01, 1e4), mean.expand(64, 2), atol=1e-3)  # all noise: the data mean


def mode_masses(x):
    return torch.bincount(MIX.posterior(x, 1e-3).argmax(1), minlength=3).double() / x.shape[0]


def test_samplers_reach_the_mixture_weights():
    for kind, sigmas in (("ve", L.karras_sigmas(40)), ("const", L.flow_sigmas(40))):
        for name, sampler in L.SAMPLERS.items():
            gen = torch.Generator().manual_seed(1)
            x = sampler(L.denoiser(MIX, kind), L.prior_noise(4000, 2, sigmas, gen), sigmas, kind, gen)
            assert torch.isfinite(x).all()
            err = (mode_masses(x) - MIX.weights).abs().max()
            assert err < 0.04, (kind, name, mode_masses(x).tolist())


def test_schedules():
    s = L.karras_sigmas(10)
    assert abs(float(s[0]) - 20.0) < 1e-9 and s[-1] == 0 and (s[1:] < s[:-1]).all()
    f = L.flow_sigmas(10)
    assert f[0] == 1.0 and f[-1] == 0 and (f[1:] < f[:-1]).all()
