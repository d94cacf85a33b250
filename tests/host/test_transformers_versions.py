"""Captioner loading on the transformers versions ComfyUI allows (>= 4.37.2), not only the one installed.

Each version runs in its own process from a folder that .ci/run fills with `pip install --target` (see OLD); the
tiny random BLIP is built with the installed transformers and written the way 4.x saves a folder (image processor
in preprocessor_config.json, the tied decoder weight stored), as BLIP folders from the hub are. The loader must pick
the auto class and dtype keyword each version understands: fp16 weights, same caption as the installed version.
"""
import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

import _tiny_hf as tiny
from hostlib import ROOT

VERSIONS = ("4.37.2", "4.46.3", "4.55.4")  # no AutoModelForImageTextToText / no dtype= / last before dtype=
OLD = ROOT / ".tf-versions"  # gitignored; .ci/run installs transformers + matching tokenizers there
LOAD = """
import importlib.util, json, sys, torch
spec = importlib.util.spec_from_file_location("hf", {hf!r})
hf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hf)
import transformers
from PIL import Image
processor, model = hf.load({folder!r}, torch.float16)
dtype = str(model.dtype)
caption = hf.caption(model.float(), processor, [Image.new("RGB", (32, 32), (200, 30, 30))], "", 8, "cpu")
print(json.dumps({{"version": transformers.__version__, "dtype": dtype, "caption": caption}}))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf4") / "blip"
    tiny.blip(path)
    processor = path / "processor_config.json"
    if processor.exists():  # transformers 5 nests the image processor here; 4.x reads preprocessor_config.json
        config = json.loads(processor.read_text())
        (path / "preprocessor_config.json").write_text(json.dumps({**config["image_processor"], "processor_class": config["processor_class"]}))
        processor.unlink()
    weights = load_file(path / "model.safetensors")  # transformers 5 drops tied weights when saving; 4.x keeps them
    weights.setdefault("text_decoder.cls.predictions.decoder.weight", weights["text_decoder.bert.embeddings.word_embeddings.weight"].clone())
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    return path


def run(folder, pythonpath=None):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    script = LOAD.format(hf=str(ROOT / "support" / "hf.py"), folder=str(folder))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version", VERSIONS)
def test_loader_works_on_every_allowed_transformers(folder, version):
    target = OLD / version
    if not (target / "transformers").is_dir():
        pytest.skip(f"transformers {version} not installed in {target} (.ci/run installs it with pip --target)")
    got = run(folder, target)
    assert got["version"] == version and got["dtype"] == "torch.float16", got
    assert got["caption"] == run(folder)["caption"] and got["caption"][0], got
