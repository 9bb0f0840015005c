"""Where the project's own files are, for the host side: templates, playbooks, image recipes, agents.

The host side renders templates/, runs playbooks/, builds images from images/ and ships agents/ to
the machines; every module finds them through these constants rather than its own ``__file__``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
PLAYBOOKS = ROOT / "playbooks"
IMAGES = ROOT / "images"
AGENTS = ROOT / "agents"
PYPROJECT = ROOT / "pyproject.toml"
