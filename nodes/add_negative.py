"""Add Negative: a chain of weighted negative prompts (NEGGUIDE_NEGATIVES), so adding one more never rewires the graph."""
from comfy_api.latest import io

from ..guiders.perp_neg import check_weight
from ._common import CONDITIONING, Negatives


def chain(previous, conditioning, weight, label=None):
    """A new list (cached node outputs are never mutated) with one more weighted negative."""
    previous = list(previous or [])
    label = label or f"negative #{len(previous) + 1}"
    check_weight(label, weight)
    return previous + [{"conditioning": conditioning, "weight": weight, "label": label}]


class AddNegative(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NegGuideAddNegative",
            display_name="Add Negative (NegGuide)",
            category=CONDITIONING,
            description="Appends one weighted negative prompt to a chain. Chain as many as you like and plug the "
                        "last one into a NegGuide guider's more_negatives input; each negative keeps its own weight.",
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The negative prompt, encoded with the checkpoint's CLIP."),
                io.Float.Input("weight", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="How hard to push away from this negative (Perp-Neg w_i, >= 0). The paper's 2D example uses 1.5."),
                Negatives.Input("previous", optional=True, tooltip="Earlier negatives in the chain (optional)."),
            ],
            outputs=[Negatives.Output(display_name="negatives")],
        )

    @classmethod
    def execute(cls, conditioning, weight, previous=None) -> io.NodeOutput:
        return io.NodeOutput(chain(previous, conditioning, weight))


NODES = [AddNegative]
