"""The desktop app (PySide6 + pyqtgraph). The only package that may import Qt (an import-linter
contract in pyproject.toml enforces it); everything it shows comes from :mod:`app.live`."""
