"""Screenshot of the running app replaying a face+speech clip (docs/screenshot.png).

    xvfb-run -a python scripts/screenshot.py --model DIR [--clip FILE] [--out docs/screenshot.png]

Replays in real time and grabs the window a little after the clip's last utterance is scored.
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
    args = p.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.live.config import DEMO_CLIP
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
        if s is not None and len(win.rows) >= args.rows and s.running and win.video.landmarks_drawn:
            win.grab().save(args.out)
            grabbed = True
            break
    print(f"rows {len(win.rows)}, live points {len(win.plot.live_points)}, saved={grabbed} -> {args.out}")
    win.close()
    return 0 if grabbed else 1


if __name__ == "__main__":
    sys.exit(main())
