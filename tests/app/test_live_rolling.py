"""The live rolling score agrees with the utterances it covers: its words are the transcribed words of
the last seconds (up to the ASR's text head), never "text absent" while speech is being transcribed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.assets import DEFAULT_MODEL, DEMO_CLIP
from app.live.config import LiveConfig
from app.live.session import LiveSession, window_words
from app.live.sources import file_sources
from core.features.text import Word


def _w(word: str, start: float, end: float) -> Word:
    return Word(word, start, end)


def test_window_words_follow_the_text_head_not_the_clock():
    said = [_w("I", 0.1, 0.3), _w("loved", 0.3, 0.8), _w("it.", 0.8, 1.9), _w("The", 2.6, 2.8)]
    # the clock is at 6.0 s, the ASR has committed words up to 2.9 s: the window's words end after -1.1
    got = window_words(said, "acting was", known_until=2.9, now=6.0, window=4.0)
    assert [w.word for w in got] == ["I", "loved", "it.", "The", "acting was"]
    assert got[-1].start == got[-1].end == 2.9  # the tentative text sits at the text head
    # the old rule (words that end within the clock's window) would keep only "The"
    assert [w.word for w in said if w.end > 6.0 - 4.0] == ["The"]
    # caught up: the text head is the clock
    assert [w.word for w in window_words(said, "", 3.0, 3.0, 1.0)] == ["The"]
    # silence the ASR has looked at moves the head on: 4 s later there are no words
    assert window_words(said, "", known_until=7.5, now=7.6, window=4.0) == ()


@pytest.mark.slow
def test_demo_rolling_score_is_positive_under_the_positive_sentences(live_transcriber):
    """Real-time replay of the bundled demo through the live session (file sources, no camera or
    microphone), the shipped model. The first 6.7 s are two positive sentences (utterance scores about
    +0.5 and +0.6): every rolling score that ends in them has words and is positive. Before the fix the windows whose
    words were not committed yet (all of them before about 2 s, and more on a loaded machine) were
    scored with text absent, about -0.9."""
    pytest.importorskip("faster_whisper")
    from app.pipeline.scorer import Scorer

    scorer = Scorer(DEFAULT_MODEL, "torch", threads=1)
    video, audio = file_sources(DEMO_CLIP, scorer.sample_rate)
    session = LiveSession(
        scorer, video, audio, LiveConfig(realtime=True, live_hz=2.0), transcriber=live_transcriber
    )
    session.start()
    while not session.finished.is_set() and session.clock.now() < 90:
        time.sleep(0.2)
    session.stop()
    scorer.close()
    assert session.finished.is_set()
    first = [u for u in session.rows if u.end <= 6.7]
    rolling = [r for r in session.live_rows if r.end <= 6.7]
    seen = [(r.end, round(r.score, 3), r.text) for r in rolling]
    assert len(first) == 2 and len(rolling) >= 3, (session.rows, seen)
    assert all(r.presence[0] for r in rolling), seen  # never scored with the words absent
    scores = np.array([r.score for r in rolling])
    assert scores.mean() > 0, seen
    # greedy real-time ASR sometimes mishears "the story made me really happy" ("mustor remained merely
    # happy", an utterance score of -0.47): the rolling rows are then held to the mean only
    if all(u.score > 0 for u in first):
        assert (scores > 0).all(), seen
    # and the negative second half is negative once its words are in
    last = [r for r in session.live_rows if r.end >= 11.0]
    assert last and all(r.score < 0 for r in last), [(r.end, r.score, r.text) for r in last]
