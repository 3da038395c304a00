"""Prompt text -> token ids: the normalisation shared by training and inference, the encoding,
and BPE-dropout for training.

BPE-dropout (Provilkov et al., ACL 2020, :class:`SubwordDropout`) re-segments the training
prompts every epoch.
With probability ``p`` each merge that the learned byte-level BPE would make is skipped, so a
title reads as "Ġsummer" in one epoch and "Ġsu mm er" in another. The model then sees the
subwords inside its words, which helps on titles it has never seen (misspellings, inflections,
words split differently). Inference is unchanged: prompts are segmented by the tokenizer
itself, deterministically.

Written by hand, over the merges of the library's own model: HF ``tokenizers`` has BPE
dropout (``models.BPE(dropout=p)``), but it draws from an unseeded generator, so a run could not
be repeated or resumed with the same examples. Here the draw is a numpy generator seeded with
``(seed, epoch)``, and with ``p = 0`` the segmentation equals the tokenizer's (tested).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_SPACES = re.compile(r"\s+")
# three or more single letters or digits separated by single spaces ("w o r k o u t")
_SPACED_LETTERS = re.compile(r"(?<!\S)(?:\w ){2,}\w(?!\S)")


def normalize_prompt(text: str) -> str:
    """NFKC, lower-case (``casefold``), whitespace runs collapsed to one space, stripped, and
    letters spelled out with spaces joined ("w o r k o u t" -> "workout", as the 2018 challenge
    teams cleaned titles).

    NFKC folds full-width letters and styled Unicode (𝓬𝓱𝓲𝓵𝓵 -> chill) into plain ones; emoji and
    non-Latin scripts are kept. The same function must run at training and at inference.
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), text)


def encode_prompts(
    tokenizer, prompts: Sequence[str], max_length: int, normalize: bool = True
) -> list[np.ndarray]:
    """Token ids (int64, EOS-terminated, at most ``max_length``) of each prompt.

    Distinct prompts are tokenized once: playlist titles repeat a lot ("chill", "workout").
    """
    texts = [normalize_prompt(p) if normalize else p for p in prompts]
    unique = list(dict.fromkeys(texts))
    encoded = tokenizer(unique, truncation=True, max_length=max_length, add_special_tokens=True)[
        "input_ids"
    ]
    by_text = {t: np.asarray(ids, dtype=np.int64) for t, ids in zip(unique, encoded, strict=True)}
    return [by_text[t] for t in texts]


class SubwordDropout:
    """Seeded BPE-dropout segmentations of prompts, for a byte-level BPE tokenizer.

    Args:
        tokenizer: a transformers fast tokenizer over a ``tokenizers`` BPE model with a
            ``ByteLevel`` pre-tokenizer (what ``--tokenizer subword`` learns).
        p: the probability of skipping each merge, in ``[0, 1)``.
    """

    def __init__(self, tokenizer, p: float) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"the subword dropout must be in [0, 1), got {p!r}")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        spec = json.loads(backend.to_str()) if backend is not None else {}
        model = spec.get("model") or {}
        if (
            model.get("type") != "BPE"
            or (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel"
        ):
            raise ValueError(
                "subword dropout needs the learned byte-level BPE prompt tokenizer "
                "(--tokenizer subword with the T5 encoder); set it to 0 for other tokenizers"
            )
        if model.get("ignore_merges") or model.get("continuing_subword_prefix"):
            raise ValueError("subword dropout supports plain byte-level BPE merges only")
        self.p = float(p)
        self._pre_tokenize = backend.pre_tokenizer.pre_tokenize_str
        self._vocab: dict[str, int] = model["vocab"]
        merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
        self._rank = {(a, b): r for r, (a, b) in enumerate(merges)}
        self._eos = tokenizer.eos_token_id
        self._unk = self._vocab.get(model.get("unk_token") or "", None)

    def _word(self, word: str, rng: np.random.Generator) -> list[int]:
        """One pre-tokenized word's token ids: the lowest-ranked adjacent pair is merged first
        (leftmost on ties), as the tokenizer does, each candidate merge skipped with
        probability ``p`` at each step."""
        symbols = list(word)
        while len(symbols) > 1:
            ranked = [
                (self._rank[pair], i)
                for i, pair in enumerate(zip(symbols, symbols[1:], strict=False))
                if pair in self._rank
            ]
            if self.p:
                ranked = [
                    c
                    for c, keep in zip(ranked, rng.random(len(ranked)) >= self.p, strict=True)
                    if keep
                ]
            if not ranked:
                break
            _, i = min(ranked)
            symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
        return [self._vocab.get(s, self._unk) for s in symbols]

    def encode(
        self, texts: Sequence[str], max_length: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """Token ids of each text (already normalised), EOS-terminated and at most
        ``max_length`` long like :func:`text2tracks.data.encode_prompts`; a fresh draw per
        occurrence."""
        out = []
        for text in texts:
            ids = [t for word, _ in self._pre_tokenize(text) for t in self._word(word, rng)]
            ids = ids[: max_length - 1] + [self._eos]
            out.append(np.asarray(ids, dtype=np.int64))
        return out
