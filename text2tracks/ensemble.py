"""Several seq2seq models decoded as one: a product-of-experts constrained beam search.

Models trained apart (another seed, another encoder) make different mistakes; scoring each
semantic-ID continuation by the *mean* of their log-probabilities (the geometric mean of their
distributions, a product of experts) and searching that in one beam gives a list that none of
them writes alone. Each member keeps its own tokenizer and its own token layout: the beam is held
in the catalogue's code space (``(rows, t)`` codes), and each member reads it through its own
``offset + code`` tokens, so a T5 over subwords and a MiniLM over WordPieces can be decoded
together as long as they spell the same catalogue.

The search itself is :func:`text2tracks.code_search.ensemble_generate` (re-exported here with
:class:`EnsembleMember`); this module holds the members as the API loads them and the API's
ranking over them (:func:`search_ensemble`) and its scores of given tracks (``score_tracks``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from text2tracks.code_search import EnsembleMember, ensemble_generate, model_eos_token_id
from text2tracks.tokens import SIDTokenLayout
from text2tracks.trie import FlatTrie

if TYPE_CHECKING:  # torch is imported lazily: importing text2tracks loads no torch
    pass

__all__ = [
    "EnsembleMember",
    "EnsembleMixin",
    "MemberModel",
    "ensemble_generate",
    "model_eos_token_id",
    "prepare_members",
    "search_ensemble",
]


@dataclass
class MemberModel:
    """A trained member as the API holds it: the model, its tokenizer and token layout, how
    many prompt tokens and seed tracks it reads. The recommender's own model is member 0."""

    model: object
    tokenizer: object
    layout: SIDTokenLayout
    max_prompt_length: int
    max_seed_tracks: int = 0
    _seed_tokens: np.ndarray | None = None

    @property
    def eos_token_id(self) -> int:
        return model_eos_token_id(self.model)

    def seed_token_ids(self, catalog) -> np.ndarray:
        """``(n_items, width)`` what this member's encoder reads for each catalogue item as a
        seed (:func:`text2tracks.seed_embedding.seed_token_table`)."""
        if self._seed_tokens is None:
            from text2tracks.seed_embedding import catalogue_seed_tokens

            self._seed_tokens = catalogue_seed_tokens(self.model, self.layout, catalog.sid_codes)
        return self._seed_tokens


def prepare_members(members, catalog, device, max_seed_tracks: int) -> list[MemberModel]:
    """The recommender's extra members, checked against its catalogue (``ValueError``), moved to
    ``device`` (unless ``None``) and put in eval mode."""
    from text2tracks.generative import check_layout

    out = list(members or [])
    for i, member in enumerate(out, start=1):
        check_layout(member.layout, catalog)
        if device is not None:
            member.model.to(device)
        member.model.eval()
        if max_seed_tracks and member.max_seed_tracks != max_seed_tracks:
            raise ValueError(
                f"ensemble member {i} reads {member.max_seed_tracks} seed tracks, the first "
                f"model {max_seed_tracks}: train the members with the same --max-seed-tracks"
            )
    return out


class EnsembleMixin:
    """What :class:`~text2tracks.pipeline.Text2Tracks` adds for ensembles: the generative
    search over its own model and ``members`` as one. The class provides ``model``,
    ``tokenizer``, ``layout``, ``catalog``, ``trie``, ``max_prompt_length``,
    ``max_seed_tracks``, ``members``, ``_lock``, ``_catalogue_index`` and (``SeedTracksMixin``)
    ``_seed_token_ids``."""

    def _generate_ensemble(
        self, texts, excluded, k, num_beams, first_index, stacklevel, diversity, seeds
    ):
        """``_generate`` for a recommender with members (the caller holds the lock)."""
        with_seeds = seeds is not None and any(x is not None for x in seeds)
        first = self._own_member(self._seed_token_ids() if with_seeds else None)
        return search_ensemble(
            [first, *self.members],
            self.catalog,
            self.trie,
            texts,
            excluded,
            seeds,
            k=k,
            num_beams=num_beams,
            diversity=diversity,
            first_index=first_index,
            stacklevel=stacklevel + 1,
        )

    def _own_member(self, seed_tokens: np.ndarray | None = None) -> MemberModel:
        """The recommender's own model as member 0 (``seed_tokens``: its seed table, when the
        prompts carry seeds)."""
        return MemberModel(
            self.model,
            self.tokenizer,
            self.layout,
            self.max_prompt_length,
            self.max_seed_tracks,
            seed_tokens,
        )

    def score_tracks(
        self,
        prompt_or_prompts: str | Sequence[str],
        track_ids: Sequence[str] | Sequence[Sequence[str]],
        *,
        seed_tracks=None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """The generative search's score of given tracks, without searching: each track's
        log-probability under the model for the prompt (its ID tokens and EOS, teacher-forced;
        with members, their mean), the score generative mode ranks by and reports (its
        ``diversity=0`` order). Re-ranks another retriever's candidates (LIGER), or says where a
        known track stands.

        Args:
            prompt_or_prompts: a prompt, or a list of prompts (``""`` allowed with seeds).
            track_ids: for a ``str`` prompt, a sequence of track ids; for a list, one sequence
                per prompt (their lengths may differ). Duplicates are scored twice.
            seed_tracks: per prompt, track ids it continues, oldest first, as in
                ``recommend``; read only by a model trained with seeds.
            batch_size: prompts per teacher-forced pass.

        Returns float64 ``(n,)`` for a ``str`` prompt, ``(n_prompts, longest)`` for a list;
        NaN past a row's end and for ids outside the catalogue (one warning names them).

        Example::

            >>> recommender.score_tracks("summer party", ["spotify:track:1", "spotify:track:2"])  # doctest: +SKIP
            array([-4.21, -9.87])
        """
        from text2tracks.options import normalise_prompts, prompt_list
        from text2tracks.seed_prompts import resolve_seed_tracks, seeds_alone

        prompts, single = prompt_list(prompt_or_prompts)
        items = self._track_rows(track_ids, len(prompts), single)
        seeds = resolve_seed_tracks(
            seed_tracks, self._catalogue_index, len(prompts), single, stacklevel=2
        )
        reads = self.max_seed_tracks > 0
        texts = normalise_prompts(prompts, allow_empty=seeds_alone(prompts, seeds, reads))
        with_seeds = any(s is not None for s in seeds)
        if with_seeds and not reads:
            warnings.warn(
                "seed_tracks: this model was trained without seed tracks (max_seed_tracks 0), "
                "so its scores read the text only",
                UserWarning,
                stacklevel=2,
            )
        with_seeds = with_seeds and reads
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.full(items.shape, np.nan)
        with self._lock:
            for start in range(0, len(texts), int(batch_size)):
                rows = slice(start, start + int(batch_size))
                batch_seeds = seeds[rows] if with_seeds else None
                out[rows] = self._score_items(texts[rows], items[rows], start, 2, batch_seeds)
        return out[0] if single else out

    def _track_rows(self, track_ids, n_prompts: int, single: bool) -> np.ndarray:
        """``score_tracks``'s ``track_ids`` as catalogue indices ``(n_prompts, longest)``, -1
        past a row's end and for unknown ids (one ``UserWarning`` names the first few)."""
        rows = [track_ids] if single else list(track_ids)
        if any(isinstance(r, str) or not isinstance(r, Iterable) for r in rows):
            raise TypeError(
                "track_ids: give a list of track ids for one prompt, or one list per prompt "
                "for a list of prompts"
            )
        rows = [list(r) for r in rows]
        if len(rows) != n_prompts:
            raise ValueError(f"track_ids has {len(rows)} lists for {n_prompts} prompts")
        items = np.full((n_prompts, max((len(r) for r in rows), default=0)), -1, np.int64)
        unknown = []
        for i, row in enumerate(rows):
            for j, track in enumerate(row):
                index = self._catalogue_index(track) if isinstance(track, str) else None
                if index is None:
                    unknown.append(track)
                else:
                    items[i, j] = index
        if unknown:
            shown = ", ".join(repr(t) for t in unknown[:5])
            warnings.warn(
                f"track_ids: {len(unknown)} not in the catalogue ({shown}"
                f"{', ...' if len(unknown) > 5 else ''}); their scores are NaN",
                UserWarning,
                stacklevel=3,
            )
        return items

    def _score_items(self, texts, items, first_index, stacklevel, seeds=None):
        """The search's score of each of ``items`` (catalogue indices ``(batch, n)``, ``-1``
        for none; NaN there) for ``texts`` (and ``seeds``, per prompt its seeds' catalogue
        indices or None), over the model and its members (the caller holds the lock)."""
        with_seeds = seeds is not None and any(s is not None for s in seeds)
        return score_ensemble(
            [self._own_member(self._seed_token_ids() if with_seeds else None), *self.members],
            self.catalog,
            texts,
            items,
            first_index=first_index,
            stacklevel=stacklevel + 1,
            seeds=seeds if with_seeds else None,
        )


def search_ensemble(
    models: Sequence[MemberModel],
    catalog,
    trie: FlatTrie,
    texts: list[str],
    excluded: Sequence[np.ndarray | None],
    seeds: Sequence[np.ndarray | None] | None,
    *,
    k: int,
    num_beams: int,
    diversity: float,
    first_index: int,
    stacklevel: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The API's ranking (:func:`text2tracks.generative.search_items`) for an ensemble: each
    member tokenises the prompts (and seeds) its own way, :func:`ensemble_generate` searches
    their mean log-probability, then (``diversity > 0``) every finished beam is a candidate of
    :func:`text2tracks.generative.diversify`. Item indices int64 and scores float64,
    ``(batch, k)``. The caller holds the model lock."""
    from text2tracks.generative import candidate_count, diversify, exclude_argument

    members = _encoded_members(models, catalog, texts, seeds, first_index, stacklevel + 1)
    exclude = exclude_argument(excluded)
    candidates = candidate_count(trie, k, num_beams, diversity, exclude)
    items, scores = ensemble_generate(
        members, trie, k=candidates, num_beams=max(num_beams, candidates), exclude=exclude
    )
    return diversify(items, scores.astype(np.float64), trie.item_nodes[0][items], k, diversity)


def score_ensemble(
    models: Sequence[MemberModel],
    catalog,
    texts: list[str],
    items: np.ndarray,
    *,
    first_index: int,
    stacklevel: int,
    seeds: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """What the search would score each of ``items`` (catalogue indices ``(batch, n)``, ``-1``
    for none) for ``texts`` (and ``seeds``, per prompt its seeds' catalogue indices or None):
    :func:`ensemble_item_scores` of their IDs; NaN where no item. The caller holds the model
    lock."""
    from text2tracks.code_search import ensemble_item_scores

    items = np.asarray(items, dtype=np.int64)
    members = _encoded_members(models, catalog, texts, seeds, first_index, stacklevel + 1)
    codes = np.asarray(catalog.sid_codes)[np.maximum(items, 0)]
    scores = ensemble_item_scores(members, codes)
    return np.where(items >= 0, scores, np.nan)


def _encoded_members(models, catalog, texts, seeds, first_index: int, stacklevel: int):
    """Each model's :class:`EnsembleMember`: the prompts (and seeds) in its own tokens."""
    from text2tracks.generative import encode_prompts
    from text2tracks.seed_prompts import seeded_batch

    with_seeds = seeds is not None and any(s is not None for s in seeds)
    members = []
    for i, m in enumerate(models):
        # truncation warnings once, from the first member; the others would repeat them
        run = _call if i == 0 else _quiet
        if with_seeds:
            ids, mask = run(
                seeded_batch,
                m.tokenizer,
                texts,
                seeds,
                m.seed_token_ids(catalog),
                max_length=m.max_prompt_length,
                max_seeds=m.max_seed_tracks,
                first_index=first_index,
                stacklevel=stacklevel + 2,
            )
        else:
            enc = run(
                encode_prompts, m.tokenizer, texts, m.max_prompt_length, first_index, stacklevel + 2
            )
            ids, mask = enc["input_ids"], enc["attention_mask"]
        members.append(EnsembleMember(m.model, ids, mask, m.layout, m.eos_token_id))
    return members


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _quiet(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` without its warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)
