"""KSampler-style sampling with any guider, for the all-in-one nodes."""
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io


def ksampler_inputs():
    """The widgets a KSampler user expects, with the same names and ranges as core's KSampler."""
    return [
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="Seed for the initial noise."),
        io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Number of sampling steps."),
        io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler",
                       tooltip="The sampling algorithm."),
        io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal",
                       tooltip="How the noise levels are spaced over the steps."),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="How much of the latent to re-noise; below 1 keeps part of an input image (img2img)."),
    ]


def sample_with_guider(guider, latent: dict, seed: int, steps: int, sampler_name: str, scheduler: str, denoise: float) -> dict:
    """Same noise, sigmas and preview callback as core's KSampler, with our guider doing the CFG step."""
    model = guider.model_patcher
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    if denoise <= 0:
        return dict(latent)
    total = steps if denoise >= 1.0 else int(steps / denoise)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total).cpu()
    sigmas = sigmas[-(steps + 1):]
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
    out = guider.sample(noise, samples, comfy.samplers.sampler_object(sampler_name), sigmas,
                        denoise_mask=latent.get("noise_mask"), callback=callback,
                        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    result = dict(latent)
    result.pop("noise_mask", None)
    result["samples"] = out.to(comfy.model_management.intermediate_device())
    return result
