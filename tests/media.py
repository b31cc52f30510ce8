"""Making small test media with PyAV (no ffmpeg CLI needed): cut/mux clips, drop tracks, corrupt files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def make_clip(
    out: Path,
    video: Path | None,
    audio: Path | None,
    start: float = 0.0,
    duration: float = 3.0,
    fps: int = 15,
    audio_start: float = 0.0,
    width: int | None = None,
) -> Path:
    """Write ``out`` (mp4: mpeg4 video + aac audio) from a segment of ``video``'s picture and ``audio``'s
    sound; either may be ``None`` to leave that track out. The video loops if the source is shorter."""
    import av

    from core.features.decode import decode_audio, iter_video_frames

    out.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    if video is not None:
        src = list(iter_video_frames(video, fps=fps))
        first = round(start * fps)
        n = round(duration * fps)
        frames = [src[(first + i) % len(src)].rgb for i in range(n)]
    with av.open(str(out), "w", format="mp4") as c:
        vs = None
        if frames:
            h, w = frames[0].shape[:2]
            if width is not None:
                import cv2

                h = int(round(h * width / w / 2) * 2)
                w = width
                frames = [cv2.resize(f, (w, h)) for f in frames]
            vs = c.add_stream("mpeg4", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.bit_rate = 1_500_000
        ast = None
        pcm = None
        if audio is not None:
            sig = decode_audio(audio, 16000)
            assert sig is not None, audio
            a0 = int(audio_start * 16000)
            pcm = sig[a0 : a0 + int(duration * 16000)]
            pcm = np.pad(pcm, (0, max(0, int(duration * 16000) - len(pcm))))
            ast = c.add_stream("aac", rate=16000)
            ast.layout = "mono"
        if vs is not None:
            for rgb in frames:
                for p in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        if ast is not None and pcm is not None:
            s16 = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
            step = 1024
            for i in range(0, len(s16), step):
                chunk = s16[i : i + step]
                fr = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
                fr.sample_rate = 16000
                fr.pts = i
                fr.time_base = Fraction(1, 16000)
                for p in ast.encode(fr):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)
    return out


def corrupt_copy(src: Path, out: Path, keep: int = 4096) -> Path:
    """A file with the source's first bytes and garbage after (a cut-off / damaged download)."""
    data = src.read_bytes()[:keep]
    rng = np.random.default_rng(0)
    out.write_bytes(data + rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return out
