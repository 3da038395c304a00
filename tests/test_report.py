"""eval.report: one self-contained HTML page from a synthetic benchmark folder."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from eval.report import REPORT_NAME, hits_curves, main, render_report, write_report

# first-hit ranks of 8 prompts (0 = no relevant item in the ranked depth)
KNN_RANKS = [1, 0, 3, 12, 1, 0, 40, 7]
MODEL_RANKS = [2, 2, 0, 0, 1, 20, 0, 5]
NAME_TO_ESCAPE = "ids-<b>odd</b>-short"


def _system(hits, ci, **extra):
    return {
        "k": 10,
        "n_prompts": 8,
        "n_skipped": 1,
        "hits@10": hits,
        "hits@10_ci": ci,
        "recall@10": 0.05,
        "recall@10_ci": [0.01, 0.09],
        "ndcg@10": 0.2,
        "ndcg@10_ci": [0.1, 0.3],
        "mrr": 0.25,
        "mrr_ci": [0.12, 0.38],
        "coverage@10": 0.0123,
        **extra,
    }


def _results(with_ids=True) -> dict:
    curve = [
        {
            "step": 100 * i,
            "elapsed_s": 60.0 * i,
            "val_loss": 3.0 - 0.2 * i,
            "val_hits@10": 0.1 + 0.05 * i,
            "val_prompts": 200,
        }
        for i in range(1, 5)
    ]
    results = {
        "systems": {
            "popularity": _system(
                0.125, [0.0, 0.375], train_seconds=0.1, latency_ms_per_prompt_batched=0.0100004
            ),
            "title_knn": _system(
                0.625, [0.25, 0.875], train_seconds=12.0, latency_ms_per_prompt_batched=3.2
            ),
            "text2tracks": _system(
                0.5,
                [0.125, 0.875],
                train_seconds=600.0,
                steps=400,
                decoding_steps_per_item=5,
                mean_id_tokens=5.0,
                latency_ms_per_prompt_batched=28.5,
                latency_ms_one_prompt=20.6,
                prompts_per_s_batch64=57.4,
            ),
            NAME_TO_ESCAPE: _system(0.25, [0.0, 0.5], curve=curve[:2]),
        },
        "comparisons": {
            "text2tracks vs title_knn": {
                "diff": -0.125,
                "ci": [-0.5, 0.25],
                "p_value": 0.61,
                "n_prompts": 8,
                "relative": -0.2,
            }
        },
        "split": {"train": 80, "validation": 10, "test": 9, "test_prompts_evaluated": 8},
        "curve": curve,
        "training_summary": {"steps": 400, "elapsed_s": 600.0, "stopped_by": "max_minutes"},
        "config": {"k": 10},
    }
    if with_ids:
        results["ids"] = {
            "stats": {
                "tracks": 1000,
                "depth": 4,
                "level_sizes": [16, 16, 16, 3],
                "unique_prefixes": 990,
                "shared_prefix_share": 0.02,
                "shared_groups": 10,
                "largest_group": 3,
                "levels": [
                    {
                        "level": lv,
                        "codebook_size": 16,
                        "codes_used_share": used,
                        "perplexity": perplexity,
                        "prefixes": 16 ** (lv + 1),
                    }
                    for lv, (used, perplexity) in enumerate(
                        [(1.0, 15.0), (0.9375, 12.5), (0.5, 6.0)]
                    )
                ],
            }
        }
    return results


def _per_prompt() -> dict:
    return {
        "prompt_index": list(range(8)),
        "rank_depth": {"title_knn": 100, "text2tracks": 20},
        "systems": {
            "title_knn": {
                "hits": [float(0 < r <= 10) for r in KNN_RANKS],
                "first_hit_rank": KNN_RANKS,
            },
            "text2tracks": {
                "hits": [float(0 < r <= 10) for r in MODEL_RANKS],
                "first_hit_rank": MODEL_RANKS,
            },
            "popularity": {"hits": [0.0] * 7 + [1.0]},
        },
    }


def _folder(tmp_path: Path, per_prompt=True, with_ids=True) -> Path:
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(_results(with_ids)))
    if per_prompt:
        (out / "per_prompt.json").write_text(json.dumps(_per_prompt()))
    return out


class _Page(HTMLParser):
    """Tables as lists of rows of cell text, image sources, every tag seen, open/close balance."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.tags: list[str] = []
        self.open: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag not in self.VOID:
            self.open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()
        if tag in ("td", "th"):
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert page.open == [], f"unclosed tags {page.open}"
    return page


def _rows(page: _Page, first_header: str) -> dict[str, list[str]]:
    table = next(t for t in page.tables if t[0][0] == first_header and len(t) > 1)
    return {row[0]: row[1:] for row in table[1:]}


def test_report_has_the_table_with_intervals_the_curves_and_the_images(tmp_path):
    path = write_report(_folder(tmp_path))
    assert path == tmp_path / "bench" / REPORT_NAME
    text = path.read_text(encoding="utf-8")
    page = _parse(text)

    results = _rows(page, "system")  # the first table headed "system" is the results table
    assert list(results) == ["popularity", "title_knn", "text2tracks", NAME_TO_ESCAPE]
    assert results["title_knn"][0] == "0.625 [0.250, 0.875]"
    assert results["text2tracks"][:4] == [
        "0.500 [0.125, 0.875]",
        "0.050 [0.010, 0.090]",
        "0.200 [0.100, 0.300]",
        "0.250 [0.120, 0.380]",
    ]
    assert results["text2tracks"][4:] == ["0.0123", "8", "600"]
    comparisons = _rows(page, "comparison")
    assert comparisons["text2tracks vs title_knn"] == [
        "-0.1250",
        "[-0.5000, +0.2500]",
        "-20.0%",
        "0.610",
    ]

    # Hits@K from the first-hit ranks, exactly; the model was ranked 20 deep only
    hits = next(t for t in page.tables if t[0][:2] == ["system", "Hits@1"])
    assert hits[0] == ["system", "Hits@1", "Hits@5", "Hits@10", "Hits@20", "Hits@50", "Hits@100"]
    by_name = {row[0]: row[1:] for row in hits[1:]}
    assert by_name["title_knn"] == ["0.250", "0.375", "0.500", "0.625", "0.750", "0.750"]
    assert by_name["text2tracks"] == ["0.125", "0.500", "0.500", "0.625", "-", "-"]
    assert "not recorded for popularity, ids-&lt;b&gt;odd&lt;/b&gt;-short" in text
    assert "Ranked depth (the last K drawn): title_knn 100, text2tracks 20." in text

    codebook = _rows(page, "level")
    assert list(codebook) == ["level 0", "level 1", "level 2"]
    assert codebook["level 1"][:2] == ["16", "0.938"]
    latency_table = next(t for t in page.tables if "ms/prompt (batched)" in t[0])
    latency_rows = {row[0]: row[1:] for row in latency_table[1:]}
    assert latency_rows["text2tracks"][:3] == ["28.50", "20.60", "57.40"]
    assert latency_rows["popularity"][0] == "0.01"  # small values keep their digits

    # four plots (Hits@K, training, codebooks, latency), each an inline PNG; nothing fetched
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "script" not in page.tags and "link" not in page.tags
    assert "http://" not in text and "https://" not in text
    assert "<b>odd</b>" not in text  # names are escaped


def test_what_was_not_recorded_is_said(tmp_path):
    text = write_report(_folder(tmp_path, per_prompt=False, with_ids=False)).read_text()
    page = _parse(text)
    assert "Hits@K for K other than 10: not recorded" in text
    assert "there is no per_prompt.json" in text
    assert "Codebook use: not recorded" in text
    assert not any(t[0][:2] == ["system", "Hits@1"] for t in page.tables)
    assert len(page.images) == 3  # Hits@10 points, training curve, latency


def test_an_empty_run_renders_and_says_so():
    text = render_report({"systems": {}})
    page = _parse(text)
    assert page.images == []
    assert "No systems in results.json" in text and "Latency: not recorded" in text
    assert "Training curve: not recorded" in text


def test_hits_curve_band_holds_the_mean():
    curves, missing = hits_curves(_results(), _per_prompt(), n_bootstrap=50)
    assert set(curves) == {"title_knn", "text2tracks"} and missing == ["popularity", NAME_TO_ESCAPE]
    c = curves["title_knn"]
    assert c["ks"][0] == 1 and c["ks"][-1] == 100
    assert np.all(np.diff(c["hits"]) >= 0)  # Hits@K never falls as K grows
    assert np.all(c["low"] <= c["hits"] + 1e-12) and np.all(c["hits"] <= c["high"] + 1e-12)


def test_cli_writes_the_page_and_refuses_a_folder_without_results(tmp_path, capsys):
    folder = _folder(tmp_path)
    assert main([str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / REPORT_NAME)
    assert (folder / REPORT_NAME).is_file()
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / "nowhere")])
    assert err.value.code == 2


def _chromium() -> str | None:
    for name in ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    _chromium() is None, reason="no headless Chromium on PATH (Debian: apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    path = write_report(_folder(tmp_path))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int64)
    assert pixels.shape[:2] == (2400, 1200)
    not_white = (pixels < 240).any(axis=2)
    assert not_white.mean() > 0.02  # text, tables and plots, not a blank page
    # the plots were decoded and drawn: matplotlib's default blue (#1f77b4) is on the page
    blue = (np.abs(pixels - np.array([31, 119, 180])) < 12).all(axis=2)
    assert blue.sum() > 500
