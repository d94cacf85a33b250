"""The one host adapter: runs any guiders/ technique inside ComfyUI's CFGGuider.

Per evaluation it asks the technique which prompts it needs, sends them all through ONE calc_cond_batch call (so
ComfyUI batches them), honours the four model_options hooks exactly where core's sampling_function does, and
hands the technique's term to core's cfg_function as a folded CFG pair. A new technique needs no code here.
"""
import comfy.model_sampling
import comfy.samplers
import node_helpers
import torch
from comfy_api.latest import io

from ..guiders.technique import EMPTY, Run, Step, evaluated, find, fold_cfg_pair, probed
from ..guiders.window import Window, check_window

WINDOW_TIP = (" Outside the window the negative prompts are not evaluated at all, so those steps cost what plain CFG "
              "costs. ComfyUI-style percent of the denoising process, as in ConditioningSetTimestepRange.")
WINDOW_INPUTS = [
    io.Float.Input("negative_start", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                   tooltip="Where the negative term starts acting: 0 = from the first step." + WINDOW_TIP),
    io.Float.Input("negative_end", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                   tooltip="Where the negative term stops acting: 1 = until the last step, 0.4 = only the first 40% "
                           "(negatives matter most early)." + WINDOW_TIP),
]


def windowed(technique, model, negative_start=0.0, negative_end=1.0, has_negative=True):
    """The technique limited to a window of the denoising process, or itself when the window is everything."""
    check_window(negative_start, negative_end)
    if negative_start <= 0.0 and negative_end >= 1.0:
        return technique
    if not has_negative:
        raise ValueError("negative_start/negative_end: this guider has no negative prompt for the window to act on. "
                         "Connect a negative (with a weight > 0), or set the window back to 0 and 1.")
    sampling = model.get_model_object("model_sampling")
    return Window(technique, sampling.percent_to_sigma(negative_start), sampling.percent_to_sigma(negative_end))


def as_unconditional(conditioning, like=None):
    """Mark a conditioning as an unconditional-side prompt, as core's Perp-Neg does for its empty prompt. On
    guidance-embedded models (Flux dev) a prompt without a FluxGuidance value gets the positive's (`like`), so every
    direction is measured at the guidance the user set, not at the model's default for the empty prompt alone."""
    values = {"prompt_type": "negative"}
    guidance = next((e[1]["guidance"] for e in like or [] if "guidance" in e[1]), None)
    if guidance is not None and not any("guidance" in e[1] for e in conditioning):
        values["guidance"] = guidance
    return node_helpers.conditioning_set_values(conditioning, values)


def sampling_kind(model_patcher) -> str:
    """The technique's name for the model's noise parameterisation: flow models (SD3, Flux, Wan) are "const"."""
    sampling = model_patcher.get_model_object("model_sampling")
    return "const" if isinstance(sampling, comfy.model_sampling.CONST) else "ve"


class Guider(comfy.samplers.CFGGuider):
    """conds: name -> CONDITIONING with "positive" and "empty" plus whatever names the technique asks for. The
    positive and empty prompts sit at index 0 and 1 of every batch, like CFG's pair, so hooks that look at
    conds_out[0:2] see the pair they expect; extra prompts follow."""

    def __init__(self, model, conds: dict, cfg: float, technique):
        super().__init__(model)
        self.cfg, self.technique = cfg, technique
        self.on_evaluated = None  # called after every evaluation (live diagnostics), e.g. by the DNG nodes
        positive = conds["positive"]
        self.inner_set_conds({n: c if n == "positive" else as_unconditional(c, positive) for n, c in conds.items()})

    def find(self, kind):
        """The part of this guider's technique that is a `kind` (e.g. DNG for its plot), or None."""
        return find(self.technique, kind)

    def sample(self, noise, latent_image, sampler, sigmas, *args, **kwargs):
        for name, tensor in (("noise", noise), ("latent_image", latent_image)):
            if tensor is not None and not torch.isfinite(tensor).all():
                raise ValueError(f"{name}: the latent holds NaN or inf values. Fix the node that produced it "
                                 "(VAE Encode of a broken image, a bad latent file).")
        self.technique.reset(Run(sigmas, sampling_kind(self.model_patcher), noise.shape[0]))
        return super().sample(noise, latent_image, sampler, sigmas, *args, **kwargs)

    def _cond_batch(self, conds, x, timestep, model_options):
        """One batched model call for these prompts at x, through the calc_cond_batch hook where one is set."""
        if "sampler_calc_cond_batch_function" in model_options:
            return model_options["sampler_calc_cond_batch_function"]({"conds": conds, "input": x, "sigma": timestep,
                                                                      "model": self.inner_model, "model_options": model_options})
        return comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 - host signature
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        step = Step(x, timestep, sigmas, self.cfg)
        names = evaluated(self.technique, step, not model_options.get("disable_cfg1_optimization", False))
        conds = [self.conds.get(n) for n in names] + [None] * (2 - len(names))  # (positive, None): CFG at scale 1
        out = self._cond_batch(conds, x, timestep, model_options)
        for fn in model_options.get("sampler_pre_cfg_function", []):
            # Pre-cfg hooks are written for CFG's pair (some branch on len(conds_out) == 2): they see exactly it.
            pair = fn({"conds": conds[:2], "conds_out": list(out[:2]), "cond_scale": self.cfg, "timestep": timestep,
                       "input": x, "sigma": timestep, "model": self.inner_model, "model_options": model_options})
            out = list(pair[:2]) + list(out[2:])
        d = dict(zip(names, out))
        probe = self.technique.probe(step)
        if probe is not None:  # finite-difference rows at x + offset: calc_cond_batch takes one x, so one more call
            rows = self._cond_batch([self.conds[n] for n in probe.names], x + probe.offset.to(x), timestep, model_options)
            d.update(zip(map(probed, probe.names), rows))
        extra = self.technique.term(step, d)
        if self.on_evaluated is not None:
            self.on_evaluated()
        uncond = d.get(EMPTY, out[1])
        cond, uncond = fold_cfg_pair(d["positive"], uncond, None if extra is None else extra.to(uncond.dtype), self.cfg)
        return comfy.samplers.cfg_function(self.inner_model, cond, uncond, self.cfg, x, timestep,
                                           model_options=model_options, cond=conds[0], uncond=conds[1])
