"""One builder for every technique's node pair: a Guider node (GUIDER for SamplerCustomAdvanced) and a KSampler
node (drop-in for KSampler), generated from the same input list and the same guider factory."""
from comfy_api.latest import io

from ._common import SAMPLING
from ._sampling import ksampler_inputs, sample_with_guider

LATENT = io.Latent.Input("latent_image", tooltip="The latent to denoise.")


def node_pair(key: str, title: str, description: str, inputs, build, later_inputs=(), guider_note=" Use with "
              "SamplerCustomAdvanced.", sampler_note=" A drop-in for KSampler.", sampler_outputs=(), finish=None,
              observe=None, preview=None, default_sampler="euler"):
    """Node ids NegGuide<key>Guider and NegGuide<key>Sampler (public: never change them).

    inputs: the technique's inputs (the guider node's, in order). The sampler node has them, then latent_image and
    KSampler's widgets, then later_inputs (inputs added after release go at the end of both nodes, so saved
    workflows keep their widget order). build(**technique inputs) -> GUIDER. The sampler node outputs its LATENT,
    then sampler_outputs computed by finish(guider, latent) -> tuple. observe(guider, node_id) lets a technique
    report live to the node that built it (diagnostics drawn while sampling); preview(guider, node_cls) -> a UI
    output shown on the sampler node after sampling.
    """
    inputs, later_inputs = list(inputs), list(later_inputs)

    def schema(kind, ins, outs, note):
        return io.Schema(node_id=f"NegGuide{key}{kind}", display_name=f"{title} {'KSampler' if kind == 'Sampler' else kind} (NegGuide)",
                         category=SAMPLING, description=description + note, inputs=ins, outputs=outs,
                         hidden=[io.Hidden.unique_id] if observe else None)

    def built(cls, kwargs):
        guider = build(**kwargs)
        if observe:
            observe(guider, getattr(cls.hidden, "unique_id", None))  # no hidden inputs when called directly
        return guider

    class GuiderNode(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return schema("Guider", inputs + later_inputs, [io.Guider.Output()], guider_note)

        @classmethod
        def execute(cls, **kwargs) -> io.NodeOutput:
            return io.NodeOutput(built(cls, kwargs))

    class SamplerNode(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return schema("Sampler", inputs + [LATENT] + ksampler_inputs(default_sampler) + later_inputs,
                          [io.Latent.Output(), *sampler_outputs], sampler_note)

        @classmethod
        def execute(cls, latent_image, seed, steps, sampler_name, scheduler, denoise, **kwargs) -> io.NodeOutput:
            guider = built(cls, kwargs)
            latent = sample_with_guider(guider, latent_image, seed, steps, sampler_name, scheduler, denoise)
            return io.NodeOutput(latent, *(finish(guider, latent) if finish else ()),
                                 ui=preview(guider, cls) if preview else None)

    GuiderNode.__name__ = GuiderNode.__qualname__ = f"{key}GuiderNode"
    SamplerNode.__name__ = SamplerNode.__qualname__ = f"{key}SamplerNode"
    return [GuiderNode, SamplerNode]
