"""Text-to-3D by score distillation (experimental; math: field/ and guiders/, method: docs/3d.md).

Distill 3D trains a latent voxel field (field/grid.py) with SDS: per step one random camera, a render straight into
the model's latent space, noise at a random sigma of the model's own schedule, ONE batched evaluation of the
positive, the empty prompt and that view's Perp-Neg negatives through the pack's host adapter (nodes/_guider.py, so
model_options hooks apply), the residual in eps units (D-SDS clipping on it) and an Adam step on the field.
"""
import copy
import math
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_patcher
import comfy.model_sampling
import comfy.sampler_helpers
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..field import cameras as cam
from ..field import sds
from ..field.grid import LatentField, emptiness, estimate_bytes
from ..field.mesh import surface_nets
from ..guiders.perp_neg import PerpNeg
from ..guiders.score_clip import clip_threshold
from ..guiders.technique import Run
from ..guiders.views import SCHEDULES, mix_conditionings, view_mix, view_rows
from ._common import IMAGE, SAMPLING, ViewPrompts, encode
from ._guider import Guider, sampling_kind
from .views import TEMPLATES, view_texts

MESH_CATEGORY = "3d/NegGuide"  # core's SaveGLB / VoxelToMesh live in "3d"
ELEVATIONS = (-10.0, 45.0)      # training cameras (DreamFusion-like); below the overhead threshold, so 3 view prompts
TRAIN_VIEWS = ("front", "side", "back")
FieldSocket = io.Custom("NEGGUIDE_FIELD")


@dataclass
class Field3D:
    """What flows through a NEGGUIDE_FIELD socket. Nodes never mutate one (ComfyUI caches outputs): resuming copies."""
    field: LatentField        # on the CPU between nodes
    latent_format: object     # the model's, to decode renders (process_out) and preview them
    render_size: int          # latent pixels of the training renders
    steps: int                # optimisation steps so far
    prompt: str


def prediction_of(model) -> str:
    """field/sds.py's prediction type for a ComfyUI model: flow models (CONST) or the x = x0 + sigma n family."""
    sampling = model.get_model_object("model_sampling")
    if isinstance(sampling, comfy.model_sampling.CONST):
        return "flow"
    if isinstance(sampling, (comfy.model_sampling.EPS, comfy.model_sampling.COSMOS_RFLOW)):
        return "eps"  # eps, v, EDM and x0 models share x = x0 + sigma n; the residual only needs D
    raise ValueError(f"model: its sampling ({type(sampling).__name__}) is neither eps/v nor flow, so the SDS loop "
                     "cannot form a residual; use an image model such as SD1.5, SDXL, SD3 or Flux")


def check_model(model, field=None) -> int:
    """Latent channel count of an image model the SDS loop can use, else a ValueError naming the fix."""
    if model is None:
        raise ValueError("model: nothing connected; connect the MODEL output of Load Checkpoint")
    fmt = model.model.latent_format
    if fmt.latent_dimensions != 2:
        raise ValueError(f"model: {type(fmt).__name__} latents have {fmt.latent_dimensions + 2} dimensions (a video or "
                         "audio model); the field renders 2-D image latents. Use an image model (SD1.5, SDXL, SD3, Flux).")
    prediction_of(model)
    if field is not None and field.field.channels != fmt.latent_channels:
        raise ValueError(f"field: it has {field.field.channels} latent channels but this model uses "
                         f"{fmt.latent_channels}; resume only with the model family the field was trained with")
    return fmt.latent_channels


def check_memory(grid, channels, size, device):
    need, free = estimate_bytes(grid, channels, 1, size, size), mm.get_free_memory(device)
    if need > free:
        raise ValueError(f"grid: a {grid}^3 field rendered at {size}x{size} needs about {need / 2**30:.2f} GiB for "
                         f"training but only {free / 2**30:.2f} GiB is free on {device}; lower grid (SJC uses 100) or "
                         "render_size")


def latent_rgb(latent_format, latent):
    """[B, C, H, W] model-space latents -> [B, H, W, 3] in [0, 1] with core's cheap latent-to-RGB factors."""
    x = latent.float().movedim(1, -1)
    if latent_format.latent_rgb_factors is None:
        rgb = x[..., :3] if x.shape[-1] >= 3 else x[..., :1].expand(*x.shape[:-1], 3)
    else:
        rgb = x @ torch.tensor(latent_format.latent_rgb_factors, dtype=x.dtype, device=x.device)
        if latent_format.latent_rgb_factors_bias is not None:
            rgb = rgb + torch.tensor(latent_format.latent_rgb_factors_bias, dtype=x.dtype, device=x.device)
    return ((rgb + 1) / 2).clamp(0, 1).cpu()


def image_row(images):
    """[B, H, W, 3] -> [1, H, B*W, 3]."""
    return images.permute(1, 0, 2, 3).reshape(1, images.shape[1], -1, images.shape[3])


class StepConds:
    """The view prompts encoded ONCE; per camera, the blended positive and view negatives (a cheap tensor mix)."""

    def __init__(self, clip, prompt, view_prompts, schedule, front_range, back_range, weight_scale):
        texts = view_texts(prompt, TEMPLATES, view_prompts)
        self.encoded = {v: encode(clip, texts[v]) for v in TRAIN_VIEWS}
        self.empty = encode(clip, "")
        self.mix_args = (schedule, front_range, back_range, 60.0, weight_scale)
        self.texts = texts

    def at(self, azimuth: float, elevation: float):
        """(raw CONDITIONINGs by name, PerpNeg with this view's weights): zero-weight negatives are left out."""
        m = view_mix(azimuth, elevation, *self.mix_args)
        rows = view_rows([m])
        conds = {"positive": mix_conditionings(self.encoded, rows["positive"]), "empty": self.empty}
        negatives = []
        for k, (slot, (view, w)) in enumerate(zip(("neg_a", "neg_b"), m.negatives)):
            if w > 0:
                conds[slot] = mix_conditionings(self.encoded, rows[slot])
                negatives.append((slot, w, f"view negative {k + 1} ({view})"))
        return conds, PerpNeg(negatives)


class Distiller:
    """The model side of one SDS run: loads the model with ComfyUI's model management and returns the guided D."""

    def __init__(self, model, cfg, seed, shape, conds):
        self.model, self.cfg, self.seed = model, cfg, seed
        self.sampling = model.get_model_object("model_sampling")
        self.kind = sampling_kind(model)
        self.options = comfy.model_patcher.create_model_options_clone(model.model_options)
        self.options.setdefault("transformer_options", {})
        conds = {k: comfy.sampler_helpers.convert_cond(v) for k, v in conds.items()}
        comfy.sampler_helpers.prepare_model_patcher(model, conds, self.options)
        self.inner, _, self.loaded = comfy.sampler_helpers.prepare_sampling(model, shape, conds, self.options)
        self.device = model.load_device
        comfy.samplers.cast_to_load_options(self.options, device=self.device, dtype=model.model_dtype())

    def sigma(self, t: float) -> float:
        return float(self.sampling.percent_to_sigma(1.0 - t))

    def denoised(self, x0, noise, sigma, conds, technique):
        """The guided prediction D at x = noise_scaling(x0, noise, sigma), in inference mode, as a normal tensor."""
        sig = torch.full((x0.shape[0],), sigma, device=self.device)
        guider = Guider(self.model, conds, self.cfg, technique)
        technique.reset(Run(torch.tensor([sigma, 0.0]), self.kind, x0.shape[0]))
        self.options["transformer_options"]["sample_sigmas"] = torch.tensor([sigma, 0.0], device=self.device)
        with torch.inference_mode():
            x = self.sampling.noise_scaling(sig, noise, x0.detach())
            guider.inner_model = self.inner
            fresh = {k: [c.copy() for c in v] for k, v in guider.original_conds.items()}
            guider.conds = comfy.samplers.process_conds(self.inner, x, fresh, self.device, None, None, self.seed)
            d = guider(x, sig, model_options=self.options, seed=self.seed)
        return d.float().clone()

    def close(self):
        comfy.sampler_helpers.cleanup_models({}, self.loaded)


def preview_renderer(field, latent_format, device, size, every):
    """A callback(step) -> preview tuple or None: the field turning 30 degrees per preview, decoded cheaply."""
    previewer = latent_preview.get_previewer(device, latent_format) if every > 0 else None
    if previewer is None:
        return lambda step: None

    def render(step):
        if step % every:
            return None
        with torch.no_grad():
            view = field(cam.make_cameras([30.0 * (step // every)], 15.0, device=device), size, size)
        return previewer.decode_latent_to_preview_image("JPEG", view.latent)
    return render


def distill(*args, **kwargs):
    """Train (or resume) a field; returns (Field3D, info). ComfyUI runs nodes in inference mode: training needs it off."""
    with torch.inference_mode(False), torch.enable_grad():
        return _distill(*args, **kwargs)


def _distill(model, clip, prompt, steps, cfg, schedule, front_range, back_range, weight_scale, psi_start, psi_end,
             weighting, seed, grid, render_size, lr, emptiness_weight, preview_every, view_prompts=None, field=None):
    if steps < 1:
        raise ValueError(f"steps: {steps}; give at least 1 optimisation step (SJC runs 10000, 2000 shows a shape)")
    if clip is None:
        raise ValueError("clip: no CLIP connected; connect the checkpoint's CLIP output")
    if (psi_start > 0) != (psi_end > 0):
        raise ValueError(f"psi_start/psi_end: {psi_start} and {psi_end}; set both > 0 to clip the SDS residual "
                         "(D-SDS for Stable Diffusion: 2 -> 8) or both to 0 to turn clipping off")
    channels = check_model(model, field)
    check_memory(field.field.resolution if field else grid, channels, render_size, model.load_device)
    prediction = prediction_of(model)
    sc = StepConds(clip, prompt, view_prompts, schedule, front_range, back_range, weight_scale)
    latent_format = model.model.latent_format
    result = (Field3D(LatentField(grid, channels, seed=seed), latent_format, render_size, 0, prompt) if field is None
              else copy.deepcopy(field))
    net = result.field.to(model.load_device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    size = render_size
    first_conds, _ = sc.at(0.0, 0.0)
    # batch 2: ComfyUI's memory estimate doubles it for CFG's pair, about the 3-4 prompts of each call
    dist = Distiller(model, cfg, seed, (2, channels, size, size), {"positive": first_conds["positive"]})
    preview = preview_renderer(net, latent_format, dist.device, size, preview_every)
    pbar = comfy.utils.ProgressBar(steps)
    psi = None
    losses = []
    try:
        model.pre_run()
        for i in range(steps):
            mm.throw_exception_if_processing_interrupted()
            c = cam.sample_cameras(1, gen, ELEVATIONS, device=dist.device)
            render = net(c, size, size, generator=gen)
            sigma = dist.sigma(float(sds.sample_t(1, gen)[0]))
            noise = torch.randn(render.latent.shape, generator=gen).to(dist.device)
            conds, technique = sc.at(float(c.azimuth[0]), float(c.elevation[0]))
            d = dist.denoised(render.latent, noise, sigma, conds, technique)
            if psi_start > 0:
                psi = clip_threshold(i, steps - 1, psi_start, psi_end)
            g = sds.sds_gradient(render.latent.detach(), d, sigma, prediction, weighting, psi)
            loss = sds.sds_loss(render.latent, g).sum() + emptiness_weight * emptiness(render.weights)
            if not torch.isfinite(loss):
                raise ValueError(f"step {i}: the loss is not finite; lower lr ({lr}) or cfg ({cfg})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            pbar.update_absolute(i + 1, steps, preview(i))
    finally:
        model.cleanup()
        dist.close()
    result.field, result.render_size = net.cpu(), size
    result.steps += steps
    info = [f"prompt: {prompt!r}  ({prediction} model, {channels} latent channels)",
            *(f"{v:>8}: {sc.texts[v]}" for v in TRAIN_VIEWS),
            f"grid {result.field.resolution}^3, renders {size}x{size} latent px, {steps} steps (total {result.steps}), "
            f"cfg {cfg}, weighting {weighting}, clip {'off' if psi is None else f'{psi_start} -> {psi_end}'}, "
            f"Perp-Neg weight scale {weight_scale}, front/back range {front_range}/{back_range}",
            f"loss: first {losses[0]:.4g}, last {losses[-1]:.4g}"]
    return result, "\n".join(info)


def turntable_latents(f3d: Field3D, views: int, elevation: float, size: int):
    """(latents [V, C, S, S] in model space, opacity [V, 1, S, S]) of a turntable starting at the front."""
    cams = cam.turntable(views, elevation)
    with torch.no_grad():  # one view at a time bounds memory at large sizes
        renders = [f3d.field(cam.Cameras(*(v[i:i + 1] for v in cams)), size, size) for i in range(views)]
    return torch.cat([r.latent for r in renders]), torch.cat([r.opacity for r in renders])


class Distill3D(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideDistill3D",
            display_name="Distill 3D SDS (NegGuide, experimental)",
            category=SAMPLING,
            description="Text to 3-D by score distillation (DreamFusion / SJC) in pure torch: a latent voxel field is "
                        "rendered from a random camera each step, noised, and pulled toward what the model predicts "
                        "for that view. View prompts with per-view Perp-Neg negatives and D-SDS score clipping fight "
                        "the Janus problem (a face on every side). Slow: thousands of model calls; see docs/3d.md.",
            inputs=[
                io.Model.Input("model", tooltip="An image diffusion model (eps, v or flow: SD1.5, SDXL, SD3, Flux). "
                                                "Video models are refused."),
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP; the front/side/back prompts are encoded once."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The object without view words, e.g. \"a corgi wearing a red hat\". Ignored "
                                        "for views a connected view_prompts provides."),
                io.Int.Input("steps", default=2000, min=1, max=100000,
                             tooltip="Optimisation steps, one model call (batched prompts) each. SJC: 10000."),
                io.Float.Input("cfg", default=100.0, min=1.0, max=200.0, step=0.5,
                               tooltip="Guidance scale. Score distillation needs a large one (DreamFusion, SJC: 100)."),
                io.Combo.Input("schedule", options=list(SCHEDULES), default="threestudio",
                               tooltip="Perp-Neg view-weight schedule, as in View Conditioning."),
                io.Float.Input("front_range", default=45.0, min=1.0, max=45.0, step=0.5,
                               tooltip="Half-width of the front view in degrees. 45 = threestudio, 22.5 reproduces "
                                       "D-SDS's narrower front."),
                io.Float.Input("back_range", default=45.0, min=1.0, max=45.0, step=0.5,
                               tooltip="Half-width of the back view in degrees, like front_range around 180."),
                io.Float.Input("weight_scale", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Multiplies the Perp-Neg view negative weights: 1 = as published, 0 = view "
                                       "prompts only (plain SDS with view-dependent prompting)."),
                io.Float.Input("psi_start", default=2.0, min=0.0, max=100.0, step=0.1,
                               tooltip="D-SDS score clipping of the SDS residual (eps units) at the first step; the "
                                       "threshold moves linearly to psi_end. Paper, Stable Diffusion: 2. 0 and 0 = off."),
                io.Float.Input("psi_end", default=8.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Clipping threshold at the last step (paper: 8). 0 together with psi_start 0 = off."),
                io.Combo.Input("weighting", options=list(sds.WEIGHTINGS), default="sjc",
                               tooltip="w(sigma) of the residual: sjc = 1 (SJC, D-SDS); dreamfusion = the VP "
                                       "process's sigma_t^2 (down-weights low noise)."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1,
                             tooltip="Seeds the field, cameras, noise levels and noise: the same seed gives the same field."),
                io.Int.Input("grid", default=64, min=4, max=512,
                             tooltip="Voxels per axis (SJC: 100). Memory grows with its cube; checked before training."),
                io.Int.Input("render_size", default=64, min=8, max=256, step=8,
                             tooltip="Training renders in LATENT pixels (64 = a 512 px image for SD1.5). The field "
                                     "renders straight into latent space; no VAE in the loop."),
                io.Float.Input("lr", default=0.05, min=0.0001, max=1.0, step=0.005,
                               tooltip="Adam learning rate on the field's density and latent grids (SJC: 0.05)."),
                io.Float.Input("emptiness_weight", default=10000.0, min=0.0, max=1e6, step=100.0,
                               tooltip="Weight of SJC's emptiness loss, which clears faint fog (SJC: 10000, raised 20x "
                                       "for its second half); 0 = off."),
                io.Int.Input("preview_every", default=10, min=0, max=1000,
                             tooltip="Show a rotating preview every N steps (0 = none), decoded with core's latent previewer."),
                ViewPrompts.Input("view_prompts", optional=True,
                                  tooltip="Per-view prompts from 'Debias View Prompts (NegGuide)' (prompt debiasing)."),
                FieldSocket.Input("field", optional=True,
                                  tooltip="Resume: continue training this field (its grid wins over the grid input; "
                                          "Adam restarts, the clipping schedule spans this run's steps)."),
            ],
            outputs=[
                FieldSocket.Output(display_name="field", tooltip="The trained field: to Render Turntable and Field to Mesh."),
                io.Image.Output(display_name="preview", tooltip="Eight views rendered in latent space and mapped to "
                                                                 "RGB cheaply (no VAE); use Render Turntable for real images."),
                io.String.Output(display_name="info", tooltip="Prompts, settings and the loss."),
            ],
        )

    @classmethod
    def execute(cls, model, clip, prompt, steps, cfg, schedule, front_range, back_range, weight_scale, psi_start,
                psi_end, weighting, seed, grid, render_size, lr, emptiness_weight, preview_every, view_prompts=None,
                field=None) -> io.NodeOutput:
        result, info = distill(model, clip, prompt, steps, cfg, schedule, front_range, back_range, weight_scale,
                               psi_start, psi_end, weighting, seed, grid, render_size, lr, emptiness_weight,
                               preview_every, view_prompts, field)
        latents, _ = turntable_latents(result, 8, 15.0, result.render_size)
        return io.NodeOutput(result, image_row(latent_rgb(result.latent_format, latents)), info)


def check_field(field):
    if not isinstance(field, Field3D):
        raise ValueError("field: connect the field output of 'Distill 3D SDS (NegGuide, experimental)'")


class RenderTurntable(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideRenderTurntable",
            display_name="Render Turntable (NegGuide)",
            category=IMAGE,
            description="Renders a distilled field from evenly spaced azimuths (view 0 = front) and decodes the "
                        "latent renders with the VAE: an image batch for Image Grid or a video node, and the opacity.",
            inputs=[
                FieldSocket.Input("field", tooltip="The field from Distill 3D SDS."),
                io.Vae.Input("vae", tooltip="The VAE of the checkpoint the field was distilled with."),
                io.Int.Input("views", default=8, min=1, max=360, tooltip="Number of views over 360 degrees."),
                io.Float.Input("elevation", default=15.0, min=-90.0, max=90.0, step=1.0,
                               tooltip="Camera elevation in degrees (0 = eye level, positive = from above)."),
                io.Int.Input("size", default=0, min=0, max=512, step=8,
                             tooltip="Render size in latent pixels; 0 = the training render size (64 -> 512 px images)."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="One decoded image per view."),
                io.Mask.Output(display_name="mask", tooltip="The field's opacity per view (1 = object); invert it "
                                                            "for a transparent-background mask."),
            ],
        )

    @classmethod
    def execute(cls, field, vae, views, elevation, size) -> io.NodeOutput:
        check_field(field)
        if vae is None:
            raise ValueError("vae: nothing connected; connect the checkpoint's VAE")
        channels = getattr(vae, "latent_channels", field.field.channels)
        if channels != field.field.channels:
            raise ValueError(f"vae: it decodes {channels}-channel latents but the field has {field.field.channels}; "
                             "use the VAE of the checkpoint the field was distilled with")
        latents, opacity = turntable_latents(field, views, elevation, size or field.render_size)
        images = vae.decode(field.latent_format.process_out(latents))
        images = images.reshape(-1, *images.shape[-3:])
        mask = torch.nn.functional.interpolate(opacity, size=images.shape[1:3], mode="bilinear", align_corners=False)
        return io.NodeOutput(images, mask[:, 0].clamp(0, 1))


class FieldToMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideFieldToMesh",
            display_name="Field to Mesh (NegGuide)",
            category=MESH_CATEGORY,
            description="The surface of a distilled field (surface nets on its density grid) as a core MESH: connect "
                        "Save GLB to see it in the 3-D preview. Geometry only (core's GLB writer has no colours).",
            inputs=[
                FieldSocket.Input("field", tooltip="The field from Distill 3D SDS."),
                io.Float.Input("voxel_opacity", default=0.3, min=0.01, max=0.99, step=0.01,
                               tooltip="The surface sits where one voxel step absorbs this share of the light: lower "
                                       "keeps fainter parts, higher only the solid core (0.5 = where a voxel "
                                       "absorbs half)."),
            ],
            outputs=[io.Mesh.Output(tooltip="Vertices in the field's frame (y up, front = +z, as glTF).")],
        )

    @classmethod
    def execute(cls, field, voxel_opacity) -> io.NodeOutput:
        from comfy_extras.nodes_hunyuan3d import MESH

        check_field(field)
        f = field.field
        level = -math.log1p(-voxel_opacity) * f.voxels_per_unit
        verts, faces = surface_nets(f.density_grid().detach(), level, f.bound)
        if len(faces) == 0:
            raise ValueError(f"voxel_opacity: no surface at {voxel_opacity}; lower it, or train the field longer")
        return io.NodeOutput(MESH(torch.from_numpy(verts)[None], torch.from_numpy(faces)[None]))


NODES = [Distill3D, RenderTurntable, FieldToMesh]
