from __future__ import annotations

import pytest

from app.pipeline.config import ScoreConfig, SegmentConfig
from app.pipeline.segment import UtteranceSegmenter, sliding_windows, utterances
from core.config import ConfigError
from core.features.text import Word


def words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(w, s, e) for w, s, e in spec]


SPEECH = words(
    ("Hello", 0.0, 0.4),
    ("there,", 0.5, 0.9),
    ("friend.", 1.0, 1.5),  # sentence end after 1.5 s: a break
    ("This", 1.8, 2.0),
    ("goes", 2.1, 2.4),
    ("on", 2.5, 2.6),
    ("after", 5.0, 5.3),  # 2.4 s pause: a break
    ("a", 5.4, 5.5),
    ("pause", 5.6, 6.0),
)


def test_utterances_break_at_sentence_ends_and_long_pauses() -> None:
    units = utterances(SPEECH, SegmentConfig(max_pause=2.0, min_sentence=1.0))
    assert [u.text for u in units] == ["Hello there, friend.", "This goes on", "after a pause"]
    assert [(u.start, u.end) for u in units] == [(0.0, 1.5), (1.8, 2.6), (5.0, 6.0)]
    assert {u.kind for u in units} == {"utterance"}


def test_short_sentences_are_kept_together_and_long_ones_cut() -> None:
    w = words(("Yes.", 0.0, 0.3), ("No.", 0.4, 0.7), ("Maybe", 0.8, 1.2))
    assert [u.text for u in utterances(w, SegmentConfig(min_sentence=1.0))] == ["Yes. No. Maybe"]
    many = [Word(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(40)]  # 20 s without a pause
    units = utterances(many, SegmentConfig(max_duration=6.0))
    assert all(u.duration <= 6.0 for u in units) and len(units) == 4
    assert sum(len(u.words) for u in units) == 40


def test_pushing_word_by_word_gives_the_same_utterances() -> None:
    """The live app pushes words as ASR commits them; the result must not depend on the chunking."""
    cfg = SegmentConfig(max_pause=2.0)
    seg = UtteranceSegmenter(cfg)
    live = [u for w in SPEECH for u in seg.push([w])] + seg.flush()
    assert live == utterances(SPEECH, cfg)
    assert seg.flush() == []


def test_sliding_windows_cover_the_recording() -> None:
    cfg = SegmentConfig(window=2.0)
    units = sliding_windows(6.5, SPEECH, cfg)
    assert [(u.start, u.end) for u in units] == [
        (0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (4.0, 6.0), (5.0, 6.5)
    ]  # fmt: skip
    assert units[0].text == "Hello there, friend. This"  # word middles in [0, 2)
    assert units[1].text == "friend. This goes on"
    assert units[3].text == "" and units[-1].text == "after a pause"
    assert [u.start for u in sliding_windows(1.0, [], cfg)] == [0.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 0.0}, "window"),
        ({"hop": 1.0}, "needs --window"),
        ({"window": 2.0, "hop": 3.0}, "hop"),
        ({"max_pause": -1}, "max_pause"),
    ],
)
def test_bad_segment_settings_name_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SegmentConfig(**kwargs)


def test_bad_score_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="threads"):
        ScoreConfig(threads=0)
