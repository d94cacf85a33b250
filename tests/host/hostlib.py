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


def spied(model_options: dict, on_call) -> dict:
    """A copy of model_options whose calc_cond_batch wrapper calls on_call(call) after every batched model call, with
    call.conds, call.out (empty slots left out), call.x and call.sigma. A wrapper, not the calc_cond_batch hook: a
    hook sees only CFG's pair and would move a guider's extra prompts into a call of their own (docs/method.md,
    "Model patches and hooks")."""
    import types

    import comfy.patcher_extension

    def wrapper(executor, model, conds, x, sigma, *args, **kwargs):
        out = executor(model, conds, x, sigma, *args, **kwargs)
        kept = [(c, o) for c, o in zip(conds, out) if c is not None]
        on_call(types.SimpleNamespace(conds=[c for c, _ in kept], out=[o for _, o in kept], x=x, sigma=sigma))
        return out
    spy = {"transformer_options": {"wrappers": {comfy.patcher_extension.WrappersMP.CALC_COND_BATCH: {"negguide_spy": [wrapper]}}}}
    return comfy.patcher_extension.merge_nested_dicts(model_options, spy)


def recording_hooks(predictions: list, finals: list) -> dict:
    """model_options that record what a guider computes: every batched model call's predictions (one list per call,
    in batch order) and every guided output after CFG (post-cfg hook). Pass to sample_guider(options=...)."""
    def post(args):
        finals.append(args["denoised"].clone())
        return args["denoised"]
    return spied({"sampler_post_cfg_function": [post]},
                 lambda call: predictions.append([o.clone() for o in call.out]))


def sample_guider(guider, noise, steps=2, options=None):
    """euler on the normal schedule from an empty latent, straight through guider.sample; options are merged into
    the guider's model_options first (hooks that record or patch)."""
    import comfy.samplers
    import torch
    if options:
        import comfy.patcher_extension
        guider.model_options = comfy.patcher_extension.merge_nested_dicts(guider.model_options, options)
    sigmas = comfy.samplers.calculate_sigmas(guider.model_patcher.get_model_object("model_sampling"), "normal", steps)
    return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                         disable_pbar=True, seed=0)
