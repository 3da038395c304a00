"""The data of a seq2seq training run: the artifact's catalogue, the playlists re-split as
recorded in ``ART/cf/split.json``, the training examples (own tracks or the title-kNN teacher's)
and the validation sample, and their data loaders. Used by :mod:`training.train_seq2seq`.

Nothing here holds a Python object per track or per pair, so that the full MPD (800k training
playlists, 53M training rows, 2.2M catalogue items) trains on one machine. Memory model (bytes;
P training playlists, R their catalogue rows, E teacher entries, ~266 per playlist with the
default 200 + its own tracks, X examples per epoch = 16 P):

- playlists (:func:`load_training_data`, columnar reader): 4 R (int32 items) + 8 P (indptr) +
  the prompt strings (~60 P); while reading, the columnar reader's peak (see
  ``semantic_ids.columnar``);
- teacher targets: 8 E (int32 item + float32 probability, :mod:`text2tracks.teacher`);
- pairs (:class:`text2tracks.data.Seq2SeqPairs`): 8 E (the float64 cumulative weights; items
  are the teacher's array, not a copy) or, with own-track targets, 4 R items + 4 R playlists;
- an epoch's draw: 12 X (int64 playlist + int32 item per example), plus its sort's
  temporaries while drawing.

``eval.bench_train_data`` measures each stage's peak and kept RSS against this model.
"""

from __future__ import annotations

import time
from pathlib import Path

from text2tracks.artifacts import CATALOG_COMPONENT, CF_COMPONENT
from training.seq2seq_config import TrainConfig

MINILM_POSITIONS = 512  # all-MiniLM-L6-v2's max_position_embeddings


def load_training_data(config: TrainConfig, log=print):
    """The artifact's catalogue and the train / validation playlists re-split as recorded.

    MPD slices and Parquet are read with the columnar reader (no Python object per track: what
    a million playlists need), JSONL with the object reader; both give the same data.

    Returns a dict with ``catalog``, ``vocab``, ``train_prompts`` and ``validation_prompts``
    (one string per playlist), and ``train_relevant`` / ``validation_relevant`` (per playlist,
    its catalogue item indices in playlist order, as a :class:`~text2tracks.ragged.Ragged`).
    """
    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.columnar import columnar_readable
    from semantic_ids.interactions import ItemVocab

    artifact = Path(config.artifact)
    check_ids_built(artifact)
    vocab = ItemVocab.load(artifact / CF_COMPONENT)
    catalog = SemanticIDCatalog.load(artifact / CATALOG_COMPONENT / "catalog")
    if tuple(catalog.item_ids) != tuple(vocab.item_ids):
        raise ValueError(f"{artifact}: the catalogue and the CF vocabulary list different items")
    index = (
        catalog._item_index
        if hasattr(catalog, "_item_index")
        else {t: i for i, t in enumerate(catalog.item_ids)}
    )
    started = time.perf_counter()
    if columnar_readable(config.playlists):
        sides = _columnar_sides(artifact, config.playlists, index)
    else:
        sides = _object_sides(artifact, config.playlists, index)
    log(
        f"playlists: {len(sides['train_prompts'])} train, {len(sides['validation_prompts'])} "
        f"validation, read and matched to the catalogue in {time.perf_counter() - started:.1f} s"
    )
    return {"catalog": catalog, "vocab": vocab, **sides}


def check_ids_built(artifact: Path) -> None:
    """Refuse, before anything trains, an artifact whose manifest does not list the CF and
    semantic-ID components (e.g. their folders copied without ``text2tracks.json``): the model
    would train, then never load."""
    from text2tracks.artifacts import MANIFEST_NAME, ArtifactError, component_dir, read_manifest

    if not (artifact / MANIFEST_NAME).is_file():
        raise ArtifactError(
            f"{artifact} has no {MANIFEST_NAME}: build the semantic IDs first (text2tracks "
            "build-ids), or copy the manifest with the cf/ and semantic_ids/ folders"
        )
    manifest = read_manifest(artifact)
    for name in (CF_COMPONENT, CATALOG_COMPONENT):
        component_dir(
            artifact, manifest, name, "build the semantic IDs first (text2tracks build-ids)"
        )


def _columnar_sides(artifact: Path, playlists, index: dict) -> dict:
    """Train / validation prompts and catalogue items from the columnar reader: each distinct
    track's catalogue index is looked up once, then every row is mapped by one array gather."""
    import numpy as np

    from text2tracks.artifacts import artifact_split_columns
    from text2tracks.ragged import Ragged

    sides = artifact_split_columns(artifact, playlists, ("train", "validation"))
    some = sides["train"]
    code_item = np.fromiter(  # catalogue indices fit in 4 bytes (66M rows: 0.26 GB)
        (index.get(t, -1) for t in some.track_ids.tolist()),
        dtype=np.int32,
        count=len(some.track_ids),
    )
    out = {}
    for name in ("train", "validation"):
        columns = sides[name]
        items = code_item[columns.track_codes]
        out[f"{name}_prompts"] = columns.prompts()
        out[f"{name}_relevant"] = Ragged(columns.indptr, items).filter(items >= 0)
    return out


def _object_sides(artifact: Path, playlists, index: dict) -> dict:
    """Train / validation prompts and catalogue items from the object reader (JSONL)."""
    import numpy as np

    from text2tracks.artifacts import artifact_split
    from text2tracks.ragged import Ragged

    split = artifact_split(artifact, playlists)

    def relevant(side):
        out = []
        for p in side:
            seen = dict.fromkeys(j for j in (index.get(t) for t in p.track_ids) if j is not None)
            out.append(list(seen))
        return Ragged.from_rows(out, np.int32)

    return {
        "train_prompts": [p.prompt for p in split.train],
        "validation_prompts": [p.prompt for p in split.validation],
        "train_relevant": relevant(split.train),
        "validation_relevant": relevant(split.validation),
    }


TEACHER_CACHE = ".cache"  # ART/.cache/teacher-KEY/: the teacher's targets, memory-mapped


def playlist_targets(config: TrainConfig, data: dict, log):
    """Each training playlist's targets and their weights: its own tracks (no weights), or the
    title-kNN teacher's list for its prompt.

    The teacher's lists are computed once per artifact, training data and teacher settings and
    kept in ``ART/.cache/teacher-KEY/`` as ``.npy`` files that later runs, ensemble members and
    the other processes of a launch memory-map (one copy in the page cache, not one per
    process; at 1M playlists the teacher takes minutes). ``KEY`` hashes the settings and the
    data, so that a cache never serves other data."""
    if config.target_source != "teacher":
        return data["train_relevant"], None
    from text2tracks.teacher import teacher_targets

    folder = Path(config.artifact) / TEACHER_CACHE / f"teacher-{_teacher_key(config, data)}"
    if (folder / "weights.npy").is_file():
        items, weights = _load_targets(folder)
        log(f"teacher: targets for {len(items)} playlists from {folder}")
        return items, weights
    started = time.perf_counter()
    teacher = teacher_targets(
        data["train_prompts"],
        data["train_relevant"],
        len(data["catalog"]),
        top_items=config.teacher_top_items,
        own_weight=config.teacher_own_weight,
        leave_out=config.teacher_leave_out,
    )
    log(
        f"teacher: title-kNN targets for {len(teacher)} playlists in "
        f"{time.perf_counter() - started:.1f} s (top {config.teacher_top_items}, own weight "
        f"{config.teacher_own_weight}, leave-out {config.teacher_leave_out})"
    )
    _save_targets(folder, teacher.items, teacher.weights)
    return _load_targets(folder)


def _train_collator(config, train_prompts, targets, token_tables, tokenizer, blank):
    """The training examples' collator; ``token_tables``: the items' ID tokens and what the
    encoder reads for each as a seed."""
    from text2tracks.data import Seq2SeqCollator

    sid_token_ids, seed_token_ids = token_tables
    return Seq2SeqCollator(
        train_prompts,
        sid_token_ids,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        share_prompts=config.targets_per_prompt_group > 1,
        blank_prompt_ids=blank,
        max_seed_tracks=config.max_seed_tracks,
        seed_token_ids=seed_token_ids,
        soft_targets=soft_code_targets(config, *targets, sid_token_ids, tokenizer.eos_token_id),
    )


def soft_code_targets(config: TrainConfig, targets, weights, sid_token_ids, eos_token_id: int):
    """The training collator's :class:`text2tracks.soft_targets.SoftCodeTargets` (``None``
    with ``soft_target_weight`` 0): the code distributions of the lists the targets are drawn
    from (uniform over the playlist's own tracks without teacher weights)."""
    if not config.soft_target_weight:
        return None
    from text2tracks.soft_targets import SoftCodeTargets

    return SoftCodeTargets(targets, weights, sid_token_ids, eos_token_id)


def _teacher_key(config: TrainConfig, data: dict) -> str:
    """A digest of the teacher's settings, the catalogue size and the training data."""
    import hashlib
    import json

    import numpy as np

    digest = hashlib.sha256()
    settings = [
        config.teacher_top_items,
        config.teacher_own_weight,
        config.teacher_leave_out,
        len(data["catalog"]),
    ]
    digest.update(json.dumps(settings).encode())
    relevant = data["train_relevant"]
    for array in (relevant.indptr, relevant.values):  # as stored: no copy of 53M rows
        digest.update(array.dtype.str.encode())
        digest.update(memoryview(np.ascontiguousarray(array)))
    digest.update("\0".join(data["train_prompts"]).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:20]


def _save_targets(folder: Path, items, weights) -> None:
    """The targets as ``.npy`` files (no pickle), written to a temporary folder and renamed, so
    that a reader never sees half a cache."""
    import os
    import shutil
    import tempfile

    import numpy as np

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        np.save(tmp / "indptr.npy", items.indptr, allow_pickle=False)
        np.save(tmp / "items.npy", items.values, allow_pickle=False)
        np.save(tmp / "weights.npy", weights.values, allow_pickle=False)
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "weights.npy").is_file():  # not another process's finished cache
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_targets(folder: Path):
    """The cached targets as two memory-mapped :class:`~text2tracks.ragged.Ragged`."""
    import numpy as np

    from text2tracks.ragged import Ragged

    def load(name):
        return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    indptr = load("indptr")
    return Ragged(indptr, load("items")), Ragged(indptr, load("weights"))


def init_ids_from_codebooks(config: TrainConfig, model, layout, catalog, log) -> None:
    """With ``config.id_init == "codebooks"``, start the ID tokens' embeddings from the
    artifact's residual k-means centroids (:mod:`text2tracks.id_embedding_init`), when it has
    them and they made these IDs (semantic IDs; not the ablation's other schemes)."""
    from semantic_ids.residual_kmeans import ResidualKMeans
    from text2tracks.id_embedding_init import init_id_embeddings

    path = Path(config.artifact) / CATALOG_COMPONENT / "residual_kmeans"
    if config.id_init != "codebooks" or layout.scheme != "sid" or not path.is_dir():
        return
    codebooks = ResidualKMeans.load(path).codebooks_  # checked against its config
    if codebooks.shape[0] != catalog.depth - 1:  # not the quantiser of these IDs
        log(f"id init: {path} has {codebooks.shape[0]} levels, the IDs {catalog.depth - 1}; random")
        return
    n = init_id_embeddings(model, layout, catalog.level_sizes, codebooks, seed=0)
    log(f"id init: {n} ID-token embeddings from the residual k-means centroids")


def build_examples(
    config: TrainConfig,
    data: dict,
    tokenizer,
    sid_token_ids,
    log,
    targets=None,
    seed_token_ids=None,
) -> dict:
    """The training pairs and collator; the validation sample (playlists with at least one
    catalogue track; the others are skipped and counted), its pairs and collator.

    ``targets``: :func:`playlist_targets`' result when already computed (default: computed).
    ``seed_token_ids``: what the encoder reads for each item as a seed
    (:func:`text2tracks.seed_embedding.seed_token_table`; default: its ID tokens)."""
    from text2tracks.data import Seq2SeqPairs, encode_prompts

    train_targets, target_weights = targets or playlist_targets(config, data, log)
    n_train = len(data["train_prompts"])
    if config.artist_prompts:
        data, train_targets, target_weights = with_artist_prompts(
            config, data, train_targets, target_weights, log
        )
    train_prompts = encode_prompts(
        tokenizer,
        data["train_prompts"],
        config.model.max_prompt_length,
        config.normalize_prompts,
    )
    blank = encode_prompts(tokenizer, [""], config.model.max_prompt_length)[0]
    seed_token_ids = sid_token_ids if seed_token_ids is None else seed_token_ids
    seed_options = _seed_options(config, data, blank, seed_token_ids.shape[1])
    train_seed_options = dict(seed_options)
    if seed_options and config.seed_cf_weight:
        train_seed_options.update(
            seed_cf=seed_cf_lists(config, data, log), seed_cf_weight=config.seed_cf_weight
        )
    train_pairs = Seq2SeqPairs(
        train_prompts,
        train_targets,
        sid_token_ids,
        tokenizer.eos_token_id,
        target_weights=target_weights,
        targets_per_playlist=config.targets_per_playlist,
        popularity_power=config.popularity_power,
        item_counts=data["vocab"].counts,
        seed=config.seed,
        group_size=config.targets_per_prompt_group,
        bucket_batches=config.length_bucket_window,
        batch_size=config.batch_size,
        **train_seed_options,
    )
    if len(train_pairs) == 0:
        raise ValueError("no training examples: no training playlist holds a catalogue track")
    tables = (sid_token_ids, seed_token_ids)
    collate = _train_collator(
        config, train_prompts, (train_targets, target_weights), tables, tokenizer, blank
    )
    val = _validation_examples(
        config, data, tokenizer, sid_token_ids, seed_options, blank, seed_token_ids
    )
    n_artists = len(data["train_prompts"]) - n_train
    log(
        f"data: {n_train} train playlists{f' and {n_artists} artists' if n_artists else ''}, "
        f"{len(train_pairs)} examples per epoch; "
        f"{len(val['val_relevant'])} validation prompts ({val['n_val_skipped']} without "
        "catalogue tracks skipped)"
    )
    if seed_options:
        n_seeded = int(train_pairs.epoch_seeds.has_seeds.sum())
        log(f"seeds: {n_seeded} of {n_train} training playlists carry seeds in epoch 0")
    epochs = TrainEpochs(config, data, tokenizer, train_pairs, collate)
    return {"train_pairs": train_pairs, "collate": collate, "epochs": epochs, **val}


def with_artist_prompts(config: TrainConfig, data: dict, targets, weights, log):
    """``data`` and the teacher's targets with one training example per catalogue artist
    appended (:mod:`training.artist_prompts`): a new dict whose ``train_prompts`` and
    ``train_relevant`` (the artist's tracks, also what seeds are drawn from) hold the artists
    after the playlists, and the targets and weights with the artists' rows after them."""
    from text2tracks.metadata import read_track_metadata
    from training.artist_prompts import append_rows, artist_prompts

    sid_dir = Path(config.artifact) / CATALOG_COMPONENT
    metadata = read_track_metadata(sid_dir)
    if not metadata:
        raise ValueError(
            f"artist_prompts needs the catalogue's track metadata, {sid_dir}/tracks.json, which "
            "this artifact lacks: build the IDs again from playlists that carry artist names "
            "(text2tracks build-ids), or train with --no-artist-prompts"
        )
    artists = [metadata.get(t, (None, None))[1] for t in data["catalog"].item_ids]
    extra = artist_prompts(
        artists,
        data["vocab"].counts,
        data["train_prompts"],
        min_count=config.artist_min_count,
        top_items=config.artist_top_items,
    )
    log(
        f"artists: {len(extra)} artist prompts added (held >= {config.artist_min_count} times, "
        f"top {config.artist_top_items} tracks each)"
    )
    data = dict(
        data,
        train_prompts=list(data["train_prompts"]) + extra.prompts,
        train_relevant=append_rows(data["train_relevant"], extra.items),
    )
    return data, append_rows(targets, extra.items), append_rows(weights, extra.weights)


class TrainEpochs:
    """Sets up each training epoch: with ``config.subword_dropout`` its BPE-dropout prompts
    (:class:`text2tracks.prompt_tokens.SubwordDropout`, drawn from ``(seed, epoch)`` so that a
    resumed run reads the same), then its examples (``Seq2SeqPairs.set_epoch``)."""

    def __init__(self, config: TrainConfig, data: dict, tokenizer, pairs, collate) -> None:
        from text2tracks.prompt_tokens import SubwordDropout, normalize_prompt

        self.config, self.pairs, self.collate = config, pairs, collate
        self.dropout, self.prompts_epoch = None, None
        if config.subword_dropout:
            self.dropout = SubwordDropout(tokenizer, config.subword_dropout)
            normalize = config.normalize_prompts
            self.texts = [normalize_prompt(t) if normalize else t for t in data["train_prompts"]]

    def start(self, epoch: int) -> None:
        import numpy as np

        if self.dropout is not None and epoch != self.prompts_epoch:
            self.prompts_epoch = epoch
            rng = np.random.default_rng([self.config.seed, int(epoch), 2])
            prompts = self.dropout.encode(self.texts, self.config.model.max_prompt_length, rng)
            self.pairs.set_prompts(prompts)
            self.collate.set_prompts(prompts)
        self.pairs.set_epoch(epoch)


def _seed_options(config: TrainConfig, data: dict, blank, seed_width: int) -> dict:
    """``Seq2SeqPairs``' seed arguments (empty when the config draws no seeds)."""
    seeds = config.seed_draw()
    if seeds is None:
        return {}
    check_seed_room(config, seed_width)
    return dict(
        seeds=seeds,
        own_tracks=data["train_relevant"],
        blank_prompt_ids=blank,
        seed_width=seed_width,
    )


def seed_cf_lists(config: TrainConfig, data: dict, log):
    """The training playlists' CF lists for seeded targets: the ALS fold-in over the artifact's
    item factors (``ART/cf/item_factors.npy``, rows in catalogue order;
    :func:`text2tracks.cf_targets.cf_lists`) or the item co-occurrence of the other training
    playlists (:func:`text2tracks.cf_targets.cooccurrence_lists`), by ``seed_cf_source``."""
    import numpy as np

    from semantic_ids.cf import ITEM_FACTORS_NAME
    from text2tracks.cf_targets import cf_lists, cooccurrence_lists

    started = time.perf_counter()
    n_items = len(data["vocab"].item_ids)
    if config.seed_cf_source == "cooccurrence":
        lists = cooccurrence_lists(data["train_relevant"], n_items, top=config.seed_cf_top)
        what = "item co-occurrence"
    else:
        path = Path(config.artifact) / "cf" / ITEM_FACTORS_NAME
        factors = np.load(path, allow_pickle=False)
        if len(factors) != n_items:
            raise ValueError(
                f"{path} has {len(factors)} rows for a catalogue of {n_items} "
                "items: the CF factors and the catalogue come from different builds"
            )
        lists = cf_lists(data["train_relevant"], factors, top=config.seed_cf_top)
        what = "CF fold-in"
    log(
        f"seeds: {what} lists for {len(lists)} playlists in "
        f"{time.perf_counter() - started:.1f} s (top {config.seed_cf_top}, weight "
        f"{config.seed_cf_weight})"
    )
    return lists


def _validation_examples(
    config: TrainConfig,
    data: dict,
    tokenizer,
    sid_token_ids,
    seed_options: dict,
    blank,
    seed_token_ids,
) -> dict:
    """The validation sample (playlists with at least one catalogue track; the others are
    skipped and counted), its pairs and collator. With seeds, each prompt's seeds are drawn once
    and its relevant tracks are its playlist's other tracks."""
    import numpy as np

    from text2tracks.data import Seq2SeqCollator, Seq2SeqPairs, encode_prompts

    val_keep = np.flatnonzero(data["validation_relevant"].lengths() > 0).tolist()
    n_val_skipped = len(data["validation_prompts"]) - len(val_keep)
    if config.eval_prompts and len(val_keep) > config.eval_prompts:
        rng = np.random.default_rng(config.seed)
        val_keep = sorted(rng.choice(val_keep, size=config.eval_prompts, replace=False).tolist())
    val_relevant = [data["validation_relevant"][i].tolist() for i in val_keep]
    val_prompts = encode_prompts(
        tokenizer,
        [data["validation_prompts"][i] for i in val_keep],
        config.model.max_prompt_length,
        config.normalize_prompts,
    )
    val_pairs = Seq2SeqPairs(
        val_prompts,
        val_relevant,
        sid_token_ids,
        tokenizer.eos_token_id,
        targets_per_playlist=1,
        seed=config.seed,
        shuffle=False,
        **({} if not seed_options else dict(seed_options, own_tracks=val_relevant)),
    )
    if seed_options:  # a seeded prompt's relevant tracks are its playlist's other tracks
        seed_sets = [set(val_pairs.seeds_of(i).tolist()) for i in range(len(val_relevant))]
        val_relevant = [
            [j for j in r if j not in seeds_i]
            for r, seeds_i in zip(val_relevant, seed_sets, strict=True)
        ]
    val_collate = Seq2SeqCollator(
        val_prompts,
        sid_token_ids,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        blank_prompt_ids=blank,
        max_seed_tracks=config.max_seed_tracks,
        seed_token_ids=seed_token_ids,
    )
    return {
        "val_pairs": val_pairs,
        "val_collate": val_collate,
        "val_relevant": val_relevant,
        "n_val_skipped": n_val_skipped,
    }


def check_seed_room(config: TrainConfig, depth: int) -> None:
    """A MiniLM (BERT) encoder has 512 positions: the longest prompt, ``max_prompt_length``
    title tokens and ``max_seed_tracks`` seeds of ``depth`` tokens (1 with one token per seed),
    must fit in them."""
    longest = config.model.max_prompt_length + config.max_seed_tracks * depth
    if config.model.encoder == "minilm" and longest > MINILM_POSITIONS:
        raise ValueError(
            f"prompts with seeds take up to {longest} tokens ({config.model.max_prompt_length} "
            f"for the title + {config.max_seed_tracks} seeds x {depth}), more than the MiniLM "
            f"encoder's {MINILM_POSITIONS} positions; lower --max-seed-tracks"
        )


def build_loaders(config: TrainConfig, examples: dict):
    """Data loaders: training batches, validation loss batches, validation prompt batches."""
    from torch.utils.data import DataLoader

    from text2tracks.data import PromptBatches

    train_dl = DataLoader(
        examples["train_pairs"],
        batch_size=config.batch_size,
        shuffle=False,
        collate_fn=examples["collate"],
        num_workers=config.num_workers,
        drop_last=False,
    )
    eval_batch = max(1, min(64, config.batch_size))
    val_loss_dl = DataLoader(
        examples["val_pairs"], batch_size=eval_batch, collate_fn=examples["val_collate"]
    )
    val_prompt_dl = DataLoader(
        PromptBatches(len(examples["val_relevant"]), examples["val_pairs"]),
        batch_size=eval_batch,
        collate_fn=examples["val_collate"],
    )
    return train_dl, val_loss_dl, val_prompt_dl
