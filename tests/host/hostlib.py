"""Host-test helpers on top of lab/comfy_host.py (booting ComfyUI in-process with NegGuide loaded, shared with the
scripts): a test-only output node and the usual tiny graph.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "lab"))  # lab/ only, never the repo root

from comfy_host import HOST, ROOT, STUBS, HostError  # noqa: E402,F401 - re-exported for the tests
import comfy_host  # noqa: E402


class _AnyType(str):
    def __ne__(self, other):  # ComfyUI's validator accepts a type that equals every other type
        return False


class _Sink:
    """Test-only output node: ComfyUI runs only graphs that end in an output node, so execute() hangs one
    of these on every node whose outputs a test asks for."""
    CATEGORY = "_negguide_tests"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (_AnyType("*"),)}}

    def run(self, value):
        return {}


class Server:
    """What PromptExecutor needs from PromptServer when no server runs: a sink for its messages."""
    client_id = None
    last_node_id = None
    last_prompt_id = None

    def __init__(self):
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))


def boot(tmp: pathlib.Path):
    """comfy_host.boot with the test sink registered."""
    return comfy_host.boot(tmp, {"NegGuideTestSink": _Sink})


def tiny_graph(ckpt, prompt="a photo of a cat", negative="blurry", width=64, height=64, batch=1):
    """The usual loader / text encode / empty latent nodes, with ids "ckpt", "pos", "neg", "empty", "latent"."""
    enc = lambda text: {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["ckpt", 1]}}
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "pos": enc(prompt), "neg": enc(negative), "empty": enc(""),
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
    }


def recording_hooks(predictions: list, finals: list) -> dict:
    """model_options that record what a guider computes: every calc_cond_batch result (one list of predictions per
    evaluation, in batch order) and every guided output after CFG (post-cfg hook)."""
    import comfy.samplers

    def calc(args):
        out = comfy.samplers.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])
        predictions.append([o.clone() for o in out])
        return out

    def post(args):
        finals.append(args["denoised"].clone())
        return args["denoised"]
    return {"sampler_calc_cond_batch_function": calc, "sampler_post_cfg_function": [post]}


def sample_guider(guider, noise, steps=2, options=None):
    """euler on the normal schedule from an empty latent, straight through guider.sample; options are merged into
    the guider's model_options first (hooks that record or patch)."""
    import comfy.samplers
    import torch
    if options:
        guider.model_options = {**guider.model_options, **options}
    sigmas = comfy.samplers.calculate_sigmas(guider.model_patcher.get_model_object("model_sampling"), "normal", steps)
    return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                         disable_pbar=True, seed=0)
