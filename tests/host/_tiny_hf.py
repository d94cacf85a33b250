"""Tiny random Hugging Face captioners built from configs (nothing is downloaded), saved with save_pretrained.

Each builder writes a complete local model folder (config, safetensors weights, tokenizer, processor) that
transformers reloads with local_files_only=True. Weights are seeded, so captions repeat across sessions;
a large initializer range makes the captions depend on the image.
"""
import importlib.util
import os
import pathlib

import torch

STUBS = pathlib.Path(__file__).resolve().parents[2] / "lab" / "stubs"


def hide_torchvision_stub():
    """lab/stubs/torchvision (used where torchvision is not installed) looks like a real install to
    transformers, whose image processors would then import torchvision.transforms from it. Make transformers
    see what is true: no torchvision. A no-op where the real torchvision is installed."""
    import transformers.utils.import_utils as iu

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.origin or not pathlib.Path(spec.origin).is_relative_to(STUBS) or hasattr(iu, "_negguide_real"):
        return
    iu._negguide_real = real = iu._is_package_available

    def is_available(name, return_version=False):
        if name == "torchvision":
            return (False, "N/A") if return_version else (False, None)
        return real(name, return_version)
    iu._is_package_available = is_available

WORDS = "a an the photo of cat dog red blue big small tree house car sky describe this image in one sentence .".split()
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=128)


def _bert_tokenizer(extra=()):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra, *WORDS]
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, **({"bos_token": extra[0]} if extra else {})), vocab


def _save(path, model, processor):
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def _seeded(seed, build):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build().eval()


def bias_tokens(model, bias: dict):
    """Add to the language-model head's output bias, e.g. to never (or always) emit a special token."""
    vocab = model.config.get_text_config().vocab_size
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and p.shape == (vocab,):
                for token, value in bias.items():
                    p[token] += value


def blip(path, seed: int = 0, empty_captions: bool = False) -> str:
    """BLIP captioning (BlipForConditionalGeneration + BlipProcessor with a WordPiece tokenizer)."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tokenizer, vocab = _bert_tokenizer(extra=("[DEC]",))
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(vision_config=dict(VISION, initializer_range=0.5), projection_dim=32,
                        text_config=dict(TEXT, vocab_size=len(vocab), encoder_hidden_size=32, initializer_range=0.5,
                                         bos_token_id=vocab.index("[DEC]"), sep_token_id=3, pad_token_id=0))
    model = _seeded(seed, lambda: BlipForConditionalGeneration(config))
    # Special tokens decode to nothing; a random model that picks them would caption "" by chance. [SEP] ends
    # BLIP's captions: forcing it gives the always-empty captioner the error tests need.
    bias_tokens(model, {i: -1e4 for i in range(6)} | ({3: 2e4} if empty_captions else {}))
    return _save(path, model, processor)


def git(path, seed: int = 0) -> str:
    """GIT (GitForCausalLM, decoder-only: generate returns the prompt tokens first)."""
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tokenizer, vocab = _bert_tokenizer()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = GitProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = GitConfig(vision_config=dict(VISION), vocab_size=len(vocab), initializer_range=0.5,
                       bos_token_id=2, eos_token_id=3, pad_token_id=0, **TEXT)
    return _save(path, _seeded(seed, lambda: GitForCausalLM(config)), processor)


LLAVA_TEMPLATE = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
                  "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
                  "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def llava(path, seed: int = 0) -> str:
    """LLaVA (CLIP vision + Llama text) with a chat template: the chat-model path."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    vocab = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:", *WORDS]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_TEMPLATE, image_token="<image>")
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(projection_dim=32, **VISION),
        text_config=LlamaConfig(vocab_size=len(vocab), num_key_value_heads=2, initializer_range=0.5,
                                bos_token_id=2, eos_token_id=3, pad_token_id=0, **TEXT),
        image_token_index=4, vision_feature_layer=-1, vision_feature_select_strategy="default")
    return _save(path, _seeded(seed, lambda: LlavaForConditionalGeneration(config)), processor)
