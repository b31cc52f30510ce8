"""Screenshot of the running app replaying a face+speech clip (docs/screenshot.png).

    xvfb-run -a python scripts/screenshot.py --model DIR [--clip FILE] [--out docs/screenshot.png]

Replays in real time and grabs the window while it runs, once ``--rows`` utterances are scored.
docs/screenshot.png replays a 19.7 s clip made from the shared samples (a real face, two TTS
sentences), because the 6.5 s samples end before their last utterance is scored on a busy machine:

    ffmpeg -f lavfi -i anullsrc=r=16000:cl=mono -t 1.5 sil.wav
    ffmpeg -i tts_negative_en.wav -i sil.wav -i tts_positive_en.wav -filter_complex \
      "[0:a]aresample=16000,aformat=channel_layouts=mono[a0];[2:a]aresample=16000,aformat=channel_layouts=mono[a2];[a0][1:a][a2]concat=n=3:v=0:a=1[a]" \
      -map "[a]" speech.wav
    ffmpeg -i WolfgangLanger_Pexels.mp4 -i speech.wav -map 0:v:0 -map 1:a:0 -c:v copy -c:a aac -ar 16000 -ac 1 demo_long.mp4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--clip", default=None)
    p.add_argument("--out", default="docs/screenshot.png")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--rows", type=int, default=2, help="grab once this many utterances are scored")
    p.add_argument("--tentative", action="store_true", help="... and tentative text is shown")
    p.add_argument("--at", type=float, default=0.0, help="... and the replay is this many seconds in")
    args = p.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.assets import DEMO_CLIP
    from app.qt.window import MainWindow

    app = QApplication(["fine app"])
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "fine.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings)
    win.resize(1280, 820)
    win.show()
    win.load_model(args.model)
    win.start_file(args.clip or DEMO_CLIP, fast=False)
    deadline = time.monotonic() + args.timeout
    grabbed = False
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
        s = win.session
        # grab while it runs, once `--rows` utterances are on the plot
        ready = s is not None and len(win.rows) >= args.rows and s.running and win.video.landmarks_drawn
        ready = ready and s is not None and s.clock.now() >= args.at
        if ready and (win.transcript.tentative or not args.tentative):
            snap = s.snapshot()
            if snap.frame is not None and snap.face is not None:
                print(f"landmarks lag the shown frame by {snap.frame.time - snap.face.time:.3f} s")
            win.grab().save(args.out)
            grabbed = True
            break
    shown = win.video.frames_shown / max(win.session.clock.now(), 1e-6) if win.session else 0.0
    print(
        f"rows {len(win.rows)}, live points {len(win.plot.live_points)}, frames shown {win.video.frames_shown} "
        f"({shown:.1f} fps on screen), saved={grabbed} -> {args.out}"
    )
    win.close()
    return 0 if grabbed else 1


if __name__ == "__main__":
    sys.exit(main())
