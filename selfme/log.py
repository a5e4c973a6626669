"""Logging set-up shared by the command line and the stage scripts."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root logger once: ``SELFME_LOG`` (e.g. DEBUG) overrides the default INFO."""
    level = level or os.environ.get("SELFME_LOG", "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
