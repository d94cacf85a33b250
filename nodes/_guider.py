"""The one host adapter: runs any guiders/ technique inside ComfyUI's CFGGuider.

Per evaluation it asks the technique which prompts it needs, sends them all through ONE calc_cond_batch call (so
ComfyUI batches them), honours the four model_options hooks exactly where core's sampling_function does, and
hands the technique's term to core's cfg_function as a folded CFG pair. Every hook sees exactly the CFG pair core
would give it; where one reads the model batch itself (pair_only) the other rows take one more call.
A new technique needs no code here.
"""
import uuid

import comfy.model_sampling
import comfy.patcher_extension
import comfy.samplers
import node_helpers
import torch
from comfy_api.latest import io

from ..guiders.technique import Run, Step, evaluated, find, fold_cfg_pair, probed, skips_empty
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


def pair_only(model_options) -> bool:
    """Whether something reads the model batch as CFG's pair: a calc_cond_batch hook (core only ever gives it
    [cond, uncond]; SkipLayerGuidanceDiTSimple unpacks exactly two) or a diffusion-model wrapper (EasyCache: a step
    cache that decides from one prompt's rows and the whole batch's output). Then the pair gets a model call of
    its own, exactly as core makes it, and the other rows one more call beside it."""
    wrappers = comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL,
                                                        model_options, is_model_options=True)
    return "sampler_calc_cond_batch_function" in model_options or bool(wrappers)


def renamed(conditioning, tag: str):
    """The processed conditioning under ids of its own (stable, derived from the originals): rows that re-evaluate a
    prompt at another input (probes) must not overwrite what a per-prompt cache (EasyCache) keeps for the prompt."""
    return [{**c, "uuid": uuid.uuid5(c["uuid"], tag)} for c in conditioning]


class Guider(comfy.samplers.CFGGuider):
    """conds: name -> CONDITIONING with "positive" and "empty" plus whatever names the technique asks for. The
    positive and empty prompts sit at index 0 and 1 of every batch, like CFG's pair; extra prompts follow."""

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
        samples = super().sample(noise, latent_image, sampler, sigmas, *args, **kwargs)
        self.technique.finish(samples)
        return samples

    def _cond_batch(self, conds, x, timestep, model_options):
        """One batched model call for CFG's pair (or all prompts), through the calc_cond_batch hook where one is set."""
        if "sampler_calc_cond_batch_function" in model_options:
            return model_options["sampler_calc_cond_batch_function"]({"conds": conds, "input": x, "sigma": timestep,
                                                                      "model": self.inner_model, "model_options": model_options})
        return comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)

    def _rows(self, conds, x, timestep, model_options):
        """Rows outside CFG's pair, in a model call of their own that no pair-only hook sees. Two empty slots first,
        so their cond_or_uncond indices are 2, 3, ... as in the one-call batch: patches that find the unconditional
        row by index 1 (Self-Attention Guidance) never take one of these for it."""
        return comfy.samplers.calc_cond_batch(self.inner_model, [None, None, *conds], x, timestep, model_options)[2:]

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 - host signature
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        step = Step(x, timestep, sigmas, self.cfg)
        cfg1 = not model_options.get("disable_cfg1_optimization", False)
        names = evaluated(self.technique, step, cfg1)
        pair = names[:1] if skips_empty(step, cfg1) else names[:2]  # what core evaluates: (positive, None) at s = 1
        rest = names[len(pair):]
        pair_conds = [self.conds[n] for n in pair] + [None] * (2 - len(pair))
        if rest and pair_only(model_options):
            out = list(self._cond_batch(pair_conds, x, timestep, model_options))
            d = dict(zip(rest, self._rows([self.conds[n] for n in rest], x, timestep, model_options)))
        else:  # every prompt in ONE batched call
            rows = self._cond_batch([self.conds[n] for n in names] + [None] * (2 - len(names)), x, timestep, model_options)
            d = dict(zip(names, rows))
            out = [rows[0], rows[1] if len(pair) == 2 else torch.zeros_like(rows[0])]  # core's zero uncond at s = 1
        for fn in model_options.get("sampler_pre_cfg_function", []):
            # Pre-cfg hooks are written for CFG's pair (some branch on len(conds_out) == 2): they see exactly it.
            out = list(fn({"conds": pair_conds, "conds_out": out, "cond_scale": self.cfg, "timestep": timestep,
                           "input": x, "sigma": timestep, "model": self.inner_model, "model_options": model_options}))[:2]
        d.update(zip(pair, out))
        probe = self.technique.probe(step)
        if probe is not None:  # finite-difference rows at x + offset: calc_cond_batch takes one x, so one more call
            conds = [renamed(self.conds[n], "probe") for n in probe.names]
            d.update(zip(map(probed, probe.names), self._rows(conds, x + probe.offset.to(x), timestep, model_options)))
        extra = self.technique.term(step, d)
        if self.on_evaluated is not None:
            self.on_evaluated()
        cond, uncond = fold_cfg_pair(out[0], out[1], None if extra is None else extra.to(out[1].dtype), self.cfg)
        return comfy.samplers.cfg_function(self.inner_model, cond, uncond, self.cfg, x, timestep,
                                           model_options=model_options, cond=pair_conds[0], uncond=pair_conds[1])
