"""KSampler-style sampling with any guider, for the all-in-one nodes."""
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io


def ksampler_inputs(default_sampler: str = "euler"):
    """The widgets a KSampler user expects, with the same names and ranges as core's KSampler."""
    return [
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="Seed for the initial noise."),
        io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Number of sampling steps."),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default=default_sampler,
                       tooltip="The sampling algorithm."),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                       tooltip="How the noise levels are spaced over the steps."),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="How much of the latent to re-noise; below 1 keeps part of an input image (img2img)."),
    ]


def check_choice(name: str, value: str, choices: list[str]):
    """The host does not validate V3 combo values, and core's KSampler would silently swap an unknown name
    for its first choice: refuse it instead, e.g. a sampler from an old workflow or another pack."""
    if value not in choices:
        raise ValueError(f"{name}: unknown value {value!r}; pick one this ComfyUI offers, e.g. "
                         f"{', '.join(choices[:6])} ({len(choices)} in all)")


def sample_with_guider(guider, latent: dict, seed: int, steps: int, sampler_name: str, scheduler: str, denoise: float) -> dict:
    """core's common_ksampler with our guider in place of its CFGGuider: the same noise, the same latent
    preview and noise_mask handling, and the sigmas of a core KSampler object, so its sampler-specific
    schedule (dpm_2 and uni_pc drop the penultimate sigma) and its denoise edge cases stay core's own."""
    check_choice("sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS)
    check_choice("scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
    model = guider.model_patcher
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    sigmas = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                     scheduler=scheduler, denoise=denoise, model_options=model.model_options).sigmas
    out = guider.sample(noise, samples, comfy.samplers.sampler_object(sampler_name), sigmas,
                        denoise_mask=latent.get("noise_mask"), callback=latent_preview.prepare_callback(model, steps),
                        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    result = latent.copy()  # like core, keeps noise_mask and batch_index for the next sampler
    result["samples"] = out.to(comfy.model_management.intermediate_device())
    return result
