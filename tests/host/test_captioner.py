"""Captioner loader/caption nodes in a real ComfyUI with tiny random BLIP, GIT and LLaVA folders (no downloads)."""
import importlib
import json
import os
import shutil
import socket

import pytest
import torch

import _tiny_hf as tiny

FAMILIES = ["blip", "git", "chat/llava"]
tiny.hide_torchvision_stub()  # chat/llava sits two levels deep


@pytest.fixture(scope="module")
def llm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("LLM")
    tiny.blip(root / "blip")
    tiny.git(root / "git")
    tiny.llava(root / "chat" / "llava")
    (root / "a" / "b" / "too_deep").mkdir(parents=True)
    (root / "a" / "b" / "too_deep" / "config.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory, llm_root):
    root = tmp_path_factory.mktemp("LLM_bad")
    blip_config = (llm_root / "blip" / "config.json").read_text()
    for name, files in {
        "no_weights": {"config.json": blip_config},
        "corrupt_config": {"config.json": '{"model_type": "blip", '},
        "corrupt_weights": {"config.json": blip_config, "model.safetensors": "not a safetensors file"},
        "bert_text_model": {"config.json": json.dumps({"model_type": "bert"}), "model.safetensors": ""},
        "remote_code": {"config.json": json.dumps({"model_type": "my_captioner",
                                                   "auto_map": {"AutoModelForImageTextToText": "modeling.MyCaptioner"}})},
    }.items():
        (root / name).mkdir()
        for file, text in files.items():
            (root / name / file).write_text(text)
    tiny.blip(root / "silent_blip", empty_captions=True)
    shutil.copytree(llm_root / "blip", root / "blip_with_git_weights")
    shutil.copy(llm_root / "git" / "model.safetensors", root / "blip_with_git_weights" / "model.safetensors")
    return root


@pytest.fixture
def cap(host):
    return importlib.import_module(f"{host.pack.__name__}.nodes.captioner")


@pytest.fixture
def use_llm(monkeypatch):
    import folder_paths

    def use(*roots):
        monkeypatch.setitem(folder_paths.folder_names_and_paths, "LLM", ([str(r) for r in roots], set()))
    return use


def images(n=4):
    """Distinct images so captions can differ per image."""
    out = torch.stack([torch.full((40, 48, 3), v) for v in torch.linspace(0, 1, n).tolist()])
    out[-1, :, :20] = 0
    return out


def counting(monkeypatch, captioner, after_call=None):
    """Count generate calls of this captioner's HF model (an instance patch, so nothing else is affected)."""
    hf = captioner.patcher.model.hf
    calls, real = [], hf.generate

    def generate(**kwargs):
        out = real(**kwargs)
        calls.append((kwargs, out))
        if after_call:
            after_call()
        return out
    monkeypatch.setattr(hf, "generate", generate, raising=False)
    return calls


def graph(model_name, batch=2, **options):
    return {
        "load": {"class_type": "NegGuideCaptionerLoader", "inputs": {"model_name": model_name, "dtype": "auto"}},
        "img": {"class_type": "EmptyImage", "inputs": {"width": 48, "height": 40, "batch_size": batch, "color": 0xC04020}},
        "cap": {"class_type": "NegGuideCaption", "inputs": dict({"captioner": ["load", 0], "image": ["img", 0], "prompt": "",
                                                                "max_new_tokens": 8, "images_per_call": 8,
                                                                "unload_after": False}, **options)},
    }


def test_llm_folder_registered_after_extra_model_paths(cap, monkeypatch):
    import folder_paths

    default = os.path.join(folder_paths.models_dir, "LLM")
    assert default in folder_paths.get_folder_paths("LLM")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "LLM", (["/extra/LLM"], set()))
    cap.FOLDER.register()
    assert folder_paths.get_folder_paths("LLM") == ["/extra/LLM", default]
    monkeypatch.delitem(folder_paths.folder_names_and_paths, "LLM")
    cap.FOLDER.register()
    assert folder_paths.get_folder_paths("LLM") == [default]


def test_scan_finds_models_one_and_two_levels_deep(cap, use_llm, llm_root, host):
    use_llm(llm_root)
    assert cap.FOLDER.names() == ["blip", "chat/llava", "git"]
    options = host.nodes.NODE_CLASS_MAPPINGS["NegGuideCaptionerLoader"].INPUT_TYPES()["required"]["model_name"][1]["options"]
    assert options == ["blip", "chat/llava", "git"]
    with pytest.raises(ValueError, match="no captioner"):
        cap.FOLDER.resolve("../blip")


@pytest.mark.parametrize("name", FAMILIES)
def test_batch_of_four_is_one_generate_call_and_keeps_image_order(cap, use_llm, llm_root, monkeypatch, name):
    use_llm(llm_root)
    captioner = cap.LoadedCaptioner(name, cap.FOLDER.resolve(name))
    calls = counting(monkeypatch, captioner)
    batch = captioner.caption(images(4), max_new_tokens=8)
    assert len(calls) == 1 and calls[0][0]["pixel_values"].shape[0] == 4
    assert len(batch) == 4 and all(isinstance(c, str) and c for c in batch)
    assert len(set(batch)) > 1, "tiny captioners should depend on the image"
    alone = [captioner.caption(images(4)[i:i + 1], max_new_tokens=8)[0] for i in range(4)]
    assert alone == batch


def test_images_per_call_splits_the_batch_and_reports_progress(cap, use_llm, llm_root, monkeypatch):
    import comfy.utils

    use_llm(llm_root)
    captioner = cap.LoadedCaptioner("blip", cap.FOLDER.resolve("blip"))
    calls = counting(monkeypatch, captioner)
    progress = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: progress.append((value, total)))
    assert len(captioner.caption(images(5), images_per_call=2)) == 5
    assert [c[0]["pixel_values"].shape[0] for c in calls] == [2, 2, 1]
    assert progress == [(2, 5), (4, 5), (5, 5)]


def test_interrupt_is_honoured_between_batches(cap, use_llm, llm_root, monkeypatch):
    import comfy.model_management as mm

    use_llm(llm_root)
    captioner = cap.LoadedCaptioner("blip", cap.FOLDER.resolve("blip"))
    calls = counting(monkeypatch, captioner, after_call=lambda: mm.interrupt_current_processing(True))
    try:
        with pytest.raises(mm.InterruptProcessingException):
            captioner.caption(images(4), images_per_call=2)
    finally:
        mm.interrupt_current_processing(False)
    assert len(calls) == 1


def test_model_is_managed_by_comfy_and_unloads(cap, use_llm, llm_root):
    import comfy.model_management as mm

    use_llm(llm_root)
    captioner = cap.LoadedCaptioner("git", cap.FOLDER.resolve("git"))
    loaded = lambda: [m.model for m in mm.current_loaded_models]  # noqa: E731
    assert captioner.patcher not in loaded()
    captioner.caption(images(2), unload_after=False)
    assert captioner.patcher in loaded()
    assert captioner.patcher.model.device == captioner.patcher.load_device
    captioner.caption(images(2), unload_after=True)
    assert captioner.patcher not in loaded()
    assert captioner.patcher.model.device == captioner.patcher.offload_device
    assert captioner.patcher.model.hf.dtype == torch.float32  # auto on a CPU: ComfyUI says no fp16/bf16 there


def test_dtype_choice_is_honoured(cap, use_llm, llm_root):
    use_llm(llm_root)
    captioner = cap.LoadedCaptioner("blip", cap.FOLDER.resolve("blip"), "bf16")
    assert captioner.patcher.model.hf.dtype == torch.bfloat16
    assert all(captioner.caption(images(2), unload_after=True))


def test_prompt_echo_is_removed(cap, use_llm, llm_root, monkeypatch):
    use_llm(llm_root)
    captioner = cap.LoadedCaptioner("blip", cap.FOLDER.resolve("blip"))
    calls = counting(monkeypatch, captioner)
    captions = captioner.caption(images(2), prompt="A photo  of")
    raw = captioner.processor.batch_decode(calls[0][1], skip_special_tokens=True)
    assert all(r.startswith("a photo of") for r in raw)  # BLIP repeats the prompt ...
    assert captions == [" ".join(r.split())[len("a photo of"):].lstrip(" ,.:;") for r in raw]  # ... we don't


def test_chat_model_gets_its_template_and_loses_the_prompt_tokens(cap, use_llm, llm_root, monkeypatch):
    use_llm(llm_root)
    captioner = cap.LoadedCaptioner("chat/llava", cap.FOLDER.resolve("chat/llava"))
    calls = counting(monkeypatch, captioner)
    captions = captioner.caption(images(2))
    kwargs, out = calls[0]
    prompt = captioner.processor.batch_decode(kwargs["input_ids"])[0]
    assert prompt.startswith("USER:") and prompt.rstrip().endswith("ASSISTANT:")
    assert "Describe this image" in captioner.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image in one sentence."}]}])
    new_tokens = out[:, kwargs["input_ids"].shape[1]:]
    assert captions == [" ".join(t.split()) for t in captioner.processor.batch_decode(new_tokens, skip_special_tokens=True)]


def test_caption_node_in_a_graph(host, use_llm, llm_root):
    use_llm(llm_root)
    out = host.execute(graph("blip", batch=3), ["cap"], executor=host.new_executor())["cap"]
    text, captions = out
    assert isinstance(captions, list) and len(captions) == 3
    assert text == "\n".join(captions)


def test_nothing_touches_the_network(cap, use_llm, llm_root, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a NegGuide test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(OSError, match="network access"):  # the trap works
        socket.create_connection(("huggingface.co", 443))
    attempts.clear()
    use_llm(llm_root)
    for name in FAMILIES:
        assert all(cap.LoadedCaptioner(name, cap.FOLDER.resolve(name)).caption(images(2), unload_after=True))
    assert attempts == []


@pytest.mark.parametrize("folder, words", [
    ("no_weights", ["no .safetensors weights"]),
    ("corrupt_config", ["config.json cannot be read", "download the model folder again"]),
    ("corrupt_weights", ["could not be loaded", "config.json, *.safetensors"]),
    ("bert_text_model", ["'bert' model", "image-to-text", "BLIP"]),
    ("remote_code", ["its own Python code", "trust_remote_code=False", "converted"]),
    ("blip_with_git_weights", ["weights do not fit the 'blip' architecture", "missing"]),
])
def test_bad_folders_give_clear_messages(host, use_llm, bad_root, folder, words):
    use_llm(bad_root)
    with pytest.raises(host.HostError) as err:
        host.execute(graph(folder), ["cap"], executor=host.new_executor())
    message = str(err.value)
    assert str(bad_root / folder) in message
    for w in words:
        assert w in message, message


def test_empty_caption_is_an_error_naming_the_folder(host, use_llm, bad_root):
    use_llm(bad_root)
    with pytest.raises(host.HostError, match="empty caption") as err:
        host.execute(graph("silent_blip"), ["cap"], executor=host.new_executor())
    assert str(bad_root / "silent_blip") in str(err.value) and "max_new_tokens" in str(err.value)


def test_no_captioner_installed(host, cap, use_llm, tmp_path):
    (tmp_path / "blip-half-downloaded").mkdir()
    use_llm(tmp_path)
    options = host.nodes.NODE_CLASS_MAPPINGS["NegGuideCaptionerLoader"].INPUT_TYPES()["required"]["model_name"][1]["options"]
    assert options == [cap.FOLDER.none_found]
    with pytest.raises(host.HostError, match="no captioner installed") as err:
        host.execute(graph(cap.FOLDER.none_found), ["cap"], executor=host.new_executor())
    message = str(err.value)
    assert str(tmp_path / "blip-half-downloaded") in message and "config.json" in message
    # the host survives and still runs graphs
    assert host.execute({"img": graph("x")["img"]}, ["img"])["img"][0].shape == (2, 40, 48, 3)
