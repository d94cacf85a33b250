"""The masked-LM scorer on a tiny random BERT built here (no download): batching, view tokens, errors.

build_tiny_bert is also used by tests/host/test_host_debias.py (loaded by path) for the ComfyUI loading path."""
import pytest
import torch

from negguide.guiders.debias import masked_lm_scorer

VIEWS = ("front", "side", "back", "overhead")
WORDS = ("[PAD] [UNK] [CLS] [SEP] [MASK] this image is depicting a view of front side back overhead top "
         "corgi smiling red hat dog with , .").split()


def build_tiny_bert(folder, words=WORDS, seed=0):
    """A seeded random BERT masked LM with a tiny uncased word vocabulary, saved with save_pretrained."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64,
                        initializer_range=0.5)  # large random weights, so the words visibly matter
    model = BertForMaskedLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer, model


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    pytest.importorskip("transformers")
    return build_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


def by_hand(tokenizer, model, text):
    enc = tokenizer(f"This image is depicting a [MASK] view of {text}", return_tensors="pt")
    pos = enc["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    with torch.no_grad():
        p = torch.softmax(model(**enc).logits[0, pos], -1)[tokenizer.convert_tokens_to_ids(list(VIEWS))]
    return p / p.sum()


def test_scorer_equals_one_text_at_a_time(bert):
    tokenizer, model = bert
    texts = ["a smiling corgi with a red hat", "corgi", "", "a dog with a hat ."]
    done = []
    got = masked_lm_scorer(tokenizer, model, VIEWS, batch_size=3, on_batch=done.append)(texts)
    assert got.shape == (4, 4) and done == [3, 1]
    assert torch.allclose(got.sum(1), torch.ones(4), atol=1e-6)
    for row, text in zip(got, texts):
        assert torch.allclose(row, by_hand(tokenizer, model, text), atol=1e-5)
    assert not torch.allclose(got[0], got[1], atol=1e-4)  # the words matter


def test_overhead_falls_back_to_top_and_missing_views_fail(tmp_path):
    pytest.importorskip("transformers")
    tok, model = build_tiny_bert(tmp_path / "no_overhead", [w for w in WORDS if w != "overhead"])
    assert masked_lm_scorer(tok, model, VIEWS)(["corgi"]).shape == (1, 4)
    tok, model = build_tiny_bert(tmp_path / "no_back", [w for w in WORDS if w != "back"])
    with pytest.raises(ValueError, match="'back' view"):
        masked_lm_scorer(tok, model, VIEWS)
