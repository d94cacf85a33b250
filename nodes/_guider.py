"""Host side shared by every NegGuide guider.

A guider subclass names the conditions it needs and returns the extra term its method adds to plain
CFG; this base sends all conditions through ONE calc_cond_batch call (so ComfyUI batches them) and
honours the four model_options hooks exactly where ComfyUI's own sampling_function does.
"""
import comfy.samplers
import node_helpers

from ..guiders.vocab import fold_cfg_pair


def as_negative(conditioning):
    """Mark a conditioning as an unconditional-side prompt, like core's Perp-Neg does for its empty prompt."""
    return node_helpers.conditioning_set_values(conditioning, {"prompt_type": "negative"})


class NegGuideGuider(comfy.samplers.CFGGuider):
    """conds "positive" and "negative" (the empty prompt) sit at index 0 and 1 like CFG's pair, so
    pre-cfg functions that look at conds_out[0:2] see the pair they expect; extra conditions follow."""

    def extra_names(self) -> list[str]:
        """Extra conds to evaluate this step, after positive and negative."""
        return []

    def needs_uncond(self) -> bool:
        return False

    def combine(self, x, sigma, outs: dict):
        """The term added to uncond + cfg * (cond - uncond); None for plain CFG."""
        return None

    def start_run(self, noise, sigmas):
        """Validate against the latent and reset per-run state. Runs before anything is loaded."""

    def sample(self, noise, latent_image, sampler, sigmas, *args, **kwargs):
        self.start_run(noise, sigmas)
        return super().sample(noise, latent_image, sampler, sigmas, *args, **kwargs)

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 - host signature
        extras = self.extra_names()
        optimize = not model_options.get("disable_cfg1_optimization", False)
        skip_uncond = optimize and abs(self.cfg - 1.0) < 1e-9 and not extras and not self.needs_uncond()
        names = ["positive", None if skip_uncond else "negative"] + extras
        conds = [self.conds.get(n) if n else None for n in names]
        args = {"conds": conds, "input": x, "sigma": timestep, "model": self.inner_model, "model_options": model_options}
        if "sampler_calc_cond_batch_function" in model_options:
            out = model_options["sampler_calc_cond_batch_function"](args)
        else:
            out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        for fn in model_options.get("sampler_pre_cfg_function", []):
            new = fn({"conds": conds, "conds_out": out, "cond_scale": self.cfg, "timestep": timestep,
                      "input": x, "sigma": timestep, "model": self.inner_model, "model_options": model_options})
            out = list(new) + list(out[len(new):])  # some hooks return only the CFG pair
        outs = dict(zip(names[:1] + ["negative"] + extras, out))
        extra = self.combine(x, timestep, outs)
        cond, uncond = fold_cfg_pair(outs["positive"], outs["negative"], extra, self.cfg)
        return comfy.samplers.cfg_function(self.inner_model, cond, uncond, self.cfg, x, timestep,
                                           model_options=model_options, cond=conds[0], uncond=conds[1])
