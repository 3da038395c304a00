"""text2tracks.tokens: token spelling, layouts, and adding the tokens to a byte-level tokenizer
(ByT5's, built in memory: nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import ByT5Tokenizer

from text2tracks.tokens import (
    BYTE_LEVEL_SIZE,
    BYTE_TOKEN_OFFSET,
    SID_END_ID,
    SID_END_TOKEN,
    SIDTokenLayout,
    add_content_tokens,
    add_layout_tokens,
    add_sid_tokens,
    check_byte_tokenizer,
    sid_token,
)

LEVEL_SIZES = (4, 3, 2)


def test_one_token_per_level_and_code():
    assert sid_token(0, 17) == "<sid_0_17>"
    assert sid_token(2, 0) == "<sid_2_0>"
    assert sid_token(0, 1) != sid_token(1, 0)  # never shared between levels


def test_add_sid_tokens_gives_one_contiguous_block_per_level():
    tokenizer = ByT5Tokenizer(extra_ids=0)
    before = len(tokenizer)
    layout = add_sid_tokens(tokenizer, LEVEL_SIZES)
    assert len(tokenizer) == before + sum(LEVEL_SIZES)
    assert layout.level_sizes == LEVEL_SIZES and layout.scheme == "sid"
    for level, (offset, size) in enumerate(zip(layout.offsets, LEVEL_SIZES, strict=True)):
        ids = tokenizer.convert_tokens_to_ids([sid_token(level, c) for c in range(size)])
        assert ids == list(range(offset, offset + size))
    assert (layout.first_id, layout.end_id) == (before, before + sum(LEVEL_SIZES))
    assert layout.tokens() == [
        sid_token(lv, c) for lv, s in enumerate(LEVEL_SIZES) for c in range(s)
    ]
    # a tokenizer that already has them (saved after the call) is reused, not extended
    assert add_sid_tokens(tokenizer, LEVEL_SIZES) == layout and len(tokenizer) == before + 9


def test_codes_and_token_ids_round_trip_and_check_their_level():
    layout = SIDTokenLayout(LEVEL_SIZES, (300, 304, 307))
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, s, size=50) for s in LEVEL_SIZES], axis=1)
    token_ids = layout.codes_to_token_ids(codes)
    assert token_ids.dtype == np.int64
    np.testing.assert_array_equal(token_ids - np.array([300, 304, 307]), codes)
    np.testing.assert_array_equal(layout.token_ids_to_codes(token_ids), codes)
    with pytest.raises(ValueError, match="not a semantic-ID token of its level"):
        layout.token_ids_to_codes([[304, 304, 307]])  # a level-1 token at level 0
    with pytest.raises(ValueError, match="out of range"):
        layout.codes_to_token_ids([[4, 0, 0]])
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        layout.codes_to_token_ids([[0, 0]])


def test_layout_to_dict_round_trips_and_old_files_read_as_sid():
    layout = SIDTokenLayout(LEVEL_SIZES, (10, 14, 17))
    assert SIDTokenLayout.from_dict(layout.to_dict()) == layout
    assert SIDTokenLayout.from_dict({"level_sizes": [4, 3], "offsets": [5, 9]}).scheme == "sid"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(level_sizes=(4, 3), offsets=(1,)), "equal length"),
        (dict(level_sizes=(), offsets=()), "non-empty"),
        (dict(level_sizes=(4, 0), offsets=(1, 5)), "at least one code"),
        (dict(level_sizes=(4,), offsets=(1,), scheme="words"), "scheme must be one of"),
        (dict(level_sizes=(BYTE_LEVEL_SIZE, 3), offsets=(0, 300), scheme="bytes"), "byte levels"),
        (
            dict(
                level_sizes=(BYTE_LEVEL_SIZE, 3), offsets=(BYTE_TOKEN_OFFSET, 200), scheme="bytes"
            ),
            "must follow",
        ),
    ],
)
def test_bad_layouts_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SIDTokenLayout(**kwargs)


def test_content_tokens_put_sid_end_right_after_the_bytes():
    tokenizer = ByT5Tokenizer(extra_ids=0)
    layout = add_content_tokens(tokenizer, (BYTE_LEVEL_SIZE, BYTE_LEVEL_SIZE, 3))
    assert tokenizer.convert_tokens_to_ids(SID_END_TOKEN) == SID_END_ID == 259
    assert layout.scheme == "bytes"
    assert layout.offsets[:2] == (BYTE_TOKEN_OFFSET, BYTE_TOKEN_OFFSET)
    assert layout.offsets[2] > SID_END_ID
    # byte b of a text is code b at every byte level: the tokenizer's own byte tokens
    text_ids = tokenizer("é", add_special_tokens=False)["input_ids"]
    codes = layout.token_ids_to_codes([[*text_ids, layout.offsets[2]]])
    assert codes[0].tolist() == [*"é".encode(), 0]
    assert add_layout_tokens(tokenizer, layout.level_sizes, "bytes") == layout  # reused


def test_content_tokens_refuse_a_tokenizer_with_sentinels_or_not_byte_level():
    with pytest.raises(ValueError, match="must be token 259"):
        add_content_tokens(ByT5Tokenizer(), (BYTE_LEVEL_SIZE, 2))  # 100 extra_ids hold 259..
    with pytest.raises(ValueError, match="content-ID level sizes"):
        add_content_tokens(ByT5Tokenizer(extra_ids=0), (10, 2))

    class NotBytes:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7] * len(text)}

        def convert_tokens_to_ids(self, tokens):
            return [7] * len(tokens)

    with pytest.raises(ValueError, match="does not map UTF-8 byte b to token id b"):
        check_byte_tokenizer(NotBytes())
    with pytest.raises(ValueError, match="scheme must be one of"):
        add_layout_tokens(ByT5Tokenizer(extra_ids=0), (2, 2), "words")
