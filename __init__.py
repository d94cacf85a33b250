"""NegGuide: negative guidance for ComfyUI (Perp-Neg, DNS/auto-DNP, DNG, view-interpolated prompting).

ComfyUI imports this file as a package from custom_nodes/. Host imports stay inside comfy_entrypoint
so the pure math in guiders/ can be imported (and tested) without a ComfyUI checkout.
"""
WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes import NegGuideExtension

    return NegGuideExtension()
