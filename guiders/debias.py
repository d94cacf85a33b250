"""Prompt debiasing for view-dependent prompting.

Hong et al., "Debiasing Scores and Prompts of 2D Diffusion for View-consistent Text-to-3D Generation"
(NeurIPS 2023), sec. 4.2 and App. C.3, following threestudio's implementation: a masked language model
reads "This image is depicting a [MASK] view of {prompt}"; the softmax at [MASK], kept on the view words
and renormalised, is P(v | prompt). For every word u and view v

    r_v(u) = P(v | prompt) / (0.5 P(v | prompt without u) + 0.5 P(v | prompt))       (P(u) = 1/2)

and u is dropped from view v's prompt when r_v(u) < threshold (0.95): the word makes that view less
likely, so keeping it in that view's prompt fights the camera. Protected words (P(u) = 1) stay.

The scorer is injected: scorer(list of texts) -> tensor [len(texts), len(views)] of P(v | text), so the
logic is testable without a language model; masked_lm_scorer builds the real one from a loaded
transformers tokenizer and masked-LM.
"""
import re

import torch

TEMPLATE = "This image is depicting a [MASK] view of {prompt}"
VIEW_WORDS = {"front": ("front",), "side": ("side",), "back": ("back",), "overhead": ("overhead", "top")}
THRESHOLD = 0.95


def _key(word: str) -> str:
    """A word compared without case and surrounding punctuation: "Dog," matches protected "dog"."""
    return re.sub(r"^\W+|\W+$", "", word.lower())


def parse_protected(text: str) -> set:
    return {_key(w) for w in re.split(r"[,\s]+", text or "") if _key(w)}


def debias_prompt(prompt: str, scorer, views=("front", "side", "back", "overhead"), protected=(),
                  threshold: float = THRESHOLD):
    """Per-view prompts and a report.

    Returns (prompts: {view: prompt}, report: list of dicts with word, view, ratio, removed, note).
    Words are split on whitespace like the reference; removing one keeps the rest in order."""
    words = (prompt or "").split()
    if not words:
        raise ValueError("prompt: empty prompt; write what the object is, e.g. \"a corgi wearing a red hat\"")
    keep = {_key(p) for p in protected}
    texts = [" ".join(words)] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    probs = torch.as_tensor(scorer(texts), dtype=torch.float64)
    if probs.shape != (len(texts), len(views)):
        raise ValueError(f"scorer returned shape {tuple(probs.shape)}, expected ({len(texts)}, {len(views)})")
    full = probs[0]
    prompts, report = {}, []
    for j, view in enumerate(views):
        rows = []
        for i, word in enumerate(words):
            denom = 0.5 * probs[i + 1, j] + 0.5 * full[j]
            ratio = float(full[j] / denom) if denom > 0 else 1.0  # both zero: no evidence, keep the word
            low = ratio < threshold
            note = "protected" if low and _key(word) in keep else ""
            rows.append({"word": word, "view": view, "ratio": ratio, "removed": low and not note, "note": note})
        if all(r["removed"] for r in rows):  # an empty prompt would drop the object itself: keep it whole
            for r in rows:
                r.update(removed=False, note="every word was against this view")
        prompts[view] = " ".join(r["word"] for r in rows if not r["removed"])
        report += rows
    return prompts, report


def format_report(prompt: str, prompts: dict, report, threshold: float = THRESHOLD) -> str:
    """Readable summary: each view's prompt, then every word below the threshold and what happened to it."""
    lines = [f"prompt: {prompt}", f"rule: remove word u from view v when P(v|prompt) / (0.5 P(v|prompt - u) + 0.5 P(v|prompt)) < {threshold}"]
    lines += [f"{view:>8}: {p}" for view, p in prompts.items()]
    hits = [r for r in report if r["ratio"] < threshold]
    if not hits:
        lines.append("no word lowers the probability of any view: nothing removed")
    for r in hits:
        what = "removed" if r["removed"] else f"kept ({r['note']})"
        lines.append(f"{what}: '{r['word']}' from the {r['view']} view, ratio {r['ratio']:.3f}")
    return "\n".join(lines)


def view_token_ids(tokenizer, views) -> list:
    """One vocabulary id per view; the overhead view falls back to "top" if "overhead" is not a single token."""
    ids = []
    for view in views:
        for word in VIEW_WORDS.get(view, (view,)):
            pieces = tokenizer.tokenize(word)
            if len(pieces) == 1 and pieces[0] != tokenizer.unk_token:
                ids.append(tokenizer.convert_tokens_to_ids(pieces[0]))
                break
        else:
            raise ValueError(f"the masked language model's vocabulary has no single token for the {view!r} view "
                             f"(tried {', '.join(VIEW_WORDS.get(view, (view,)))}); use a BERT uncased model")
    return ids


def masked_lm_scorer(tokenizer, model, views=("front", "side", "back", "overhead"), batch_size: int = 16, on_batch=None):
    """scorer(texts) -> P(view | text) from a transformers masked LM (e.g. bert-base-uncased).
    on_batch(number of texts done) runs after every batch (progress, interruption)."""
    if tokenizer.mask_token is None:
        raise ValueError("the language model has no [MASK] token; prompt debiasing needs a masked LM such as bert-base-uncased")
    ids = torch.tensor(view_token_ids(tokenizer, views))
    device = next(model.parameters()).device

    @torch.no_grad()
    def scorer(texts):
        rows = []
        for start in range(0, len(texts), batch_size):
            chunk = [TEMPLATE.replace("[MASK]", tokenizer.mask_token).format(prompt=t) for t in texts[start:start + batch_size]]
            enc = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(device)
            logits = model(**enc).logits.float()
            at_mask = enc["input_ids"] == tokenizer.mask_token_id
            # first [MASK] per row: the template's (truncation keeps it, it is near the start)
            pos = at_mask.int().argmax(dim=1)
            p = torch.softmax(logits[torch.arange(len(chunk)), pos], dim=-1)[:, ids.to(device)]
            rows.append((p / p.sum(dim=1, keepdim=True).clamp_min(1e-30)).cpu())
            if on_batch is not None:
                on_batch(len(chunk))
        return torch.cat(rows)

    return scorer
