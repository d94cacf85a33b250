"""ComfyUI V3 nodes. Each module lists its nodes in NODES; they only adapt types, the math is in guiders/."""
from comfy_api.latest import ComfyExtension

from . import add_negative, auto_dnp, captioner, debias, distill3d, dng, dns, perp_neg, views

MODULES = [add_negative, perp_neg, views, debias, dns, captioner, auto_dnp, dng, distill3d]


class NegGuideExtension(ComfyExtension):
    async def get_node_list(self):
        return [node for module in MODULES for node in module.NODES]
