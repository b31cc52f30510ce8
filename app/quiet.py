"""``fine -q``: also silence what native libraries print straight to the stderr file descriptor.

MediaPipe's TFLite and absl/glog write ``INFO: Created TensorFlow Lite XNNPACK delegate``, ``W0000 ...
inference_feedback_manager.cc] ...`` and ``WARNING: All log messages before absl::InitializeLog()`` from C++,
past Python's logging and past environment switches such as ``GLOG_minloglevel``. Under ``-q`` fd 2 goes
through a pipe whose reader drops exactly those lines and passes everything else (our one-line errors
included) to the real stderr."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading

CHATTER = re.compile(
    rb"^(INFO: Created TensorFlow Lite|INFO: Initialized TensorFlow Lite|WARNING: All log messages before "
    rb"absl::InitializeLog|[IWE]\d{4} [\d:. ]+\d+ \S+\.cc:\d+\]|I0000|W0000|E0000 .*inference_feedback)"
)
_installed: list[threading.Thread] = []


def silence_native_chatter() -> None:
    """Filter fd 2 for the rest of the process (idempotent); also quiets absl's Python logger."""
    logging.getLogger("absl").setLevel(logging.ERROR)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if _installed:
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not CHATTER.match(line))
            if kept:
                os.write(real, kept)
        if pending and not CHATTER.match(pending):
            os.write(real, pending)

    thread = threading.Thread(target=pump, name="fine-stderr-filter", daemon=True)
    thread.start()
    _installed.append(thread)

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last writer: the pump drains and ends
        thread.join(timeout=2)

    atexit.register(restore)
