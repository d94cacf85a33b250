"""Prompt debiasing (Hong et al. 2023, sec. 4.2) with a deterministic scorer: which word leaves which view's prompt, and why."""
import math

import pytest
import torch

from negguide.guiders.debias import debias_prompt, format_report, parse_protected

VIEWS = ("front", "side", "back", "overhead")


def scorer_from(effects):
    """P(view | text) = softmax of per-view logits; each word present adds its effects[word] logits."""
    calls = []

    def scorer(texts):
        calls.append(list(texts))
        rows = []
        for t in texts:
            logits = torch.zeros(len(VIEWS), dtype=torch.float64)
            for w in t.lower().replace(",", " ").split():
                logits += torch.tensor(effects.get(w, (0, 0, 0, 0)), dtype=torch.float64)
            rows.append(torch.softmax(logits, 0))
        return torch.stack(rows)

    scorer.calls = calls
    return scorer


SMILING_AGAINST_BACK = {"smiling": (0, 0, -2, 0)}


def test_word_that_lowers_back_is_removed_from_back_only():
    prompts, report = debias_prompt("a smiling corgi", scorer_from(SMILING_AGAINST_BACK), VIEWS)
    assert prompts == {"front": "a smiling corgi", "side": "a smiling corgi", "back": "a corgi",
                       "overhead": "a smiling corgi"}
    removed = [(r["word"], r["view"]) for r in report if r["removed"]]
    assert removed == [("smiling", "back")]


def test_ratio_is_the_spec_formula():
    s = scorer_from(SMILING_AGAINST_BACK)
    _, report = debias_prompt("a smiling corgi", s, VIEWS)
    full, without = s(["a smiling corgi"])[0], s(["a corgi"])[0]
    for j, view in enumerate(VIEWS):
        row = next(r for r in report if r["word"] == "smiling" and r["view"] == view)
        assert row["ratio"] == pytest.approx(float(full[j] / (0.5 * without[j] + 0.5 * full[j])), rel=1e-12)
    back = next(r for r in report if r["word"] == "smiling" and r["view"] == "back")
    p_full = math.exp(-2) / (3 + math.exp(-2))
    assert back["ratio"] == pytest.approx(p_full / (0.5 * 0.25 + 0.5 * p_full)) and back["ratio"] < 0.95


def test_one_scorer_call_with_every_ablation():
    s = scorer_from({})
    debias_prompt("a red  hat", s, VIEWS)
    assert s.calls == [["a red hat", "red hat", "a hat", "a red"]]


def test_protected_words_are_never_removed():
    effects = {"smiling": (0, 0, -2, 0), "face": (1, 0, -3, -3)}
    prompts, report = debias_prompt("a Smiling, corgi face", scorer_from(effects), VIEWS, protected=parse_protected("smiling face"))
    assert all(p == "a Smiling, corgi face" for p in prompts.values())
    notes = {(r["word"], r["view"]): r["note"] for r in report if r["ratio"] < 0.95}
    assert notes[("Smiling,", "back")] == "protected" and notes[("face", "overhead")] == "protected"
    prompts, _ = debias_prompt("a Smiling, corgi face", scorer_from(effects), VIEWS, protected={"face"})
    assert prompts["back"] == "a corgi face"


def test_threshold_controls_removal():
    weak = {"smiling": (0, 0, -0.1, 0)}
    assert debias_prompt("a smiling corgi", scorer_from(weak), VIEWS)[0]["back"] == "a smiling corgi"
    assert debias_prompt("a smiling corgi", scorer_from(weak), VIEWS, threshold=0.999)[0]["back"] == "a corgi"


def test_a_view_keeps_its_prompt_when_every_word_is_against_it():
    prompts, report = debias_prompt("smiling face", scorer_from({"smiling": (0, 0, -2, 0), "face": (0, 0, -2, 0)}), VIEWS)
    assert prompts["back"] == "smiling face"
    assert all(not r["removed"] for r in report)
    assert "every word was against this view" in format_report("smiling face", prompts, report)


def test_report_is_readable():
    prompts, report = debias_prompt("a smiling corgi", scorer_from(SMILING_AGAINST_BACK), VIEWS)
    text = format_report("a smiling corgi", prompts, report)
    assert "removed: 'smiling' from the back view, ratio 0.2" in text
    assert "    back: a corgi" in text
    prompts, report = debias_prompt("a corgi", scorer_from({}), VIEWS)
    assert "nothing removed" in format_report("a corgi", prompts, report)


def test_bad_input():
    with pytest.raises(ValueError, match="prompt"):
        debias_prompt("   ", scorer_from({}), VIEWS)
    with pytest.raises(ValueError, match="shape"):
        debias_prompt("a corgi", lambda texts: torch.ones(len(texts), 3) / 3, VIEWS)


def test_zero_probabilities_keep_words():
    prompts, report = debias_prompt("a corgi", lambda texts: torch.zeros(len(texts), 4), VIEWS)
    assert prompts["back"] == "a corgi" and all(r["ratio"] == 1.0 for r in report)
