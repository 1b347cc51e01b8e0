"""Shipped Jinja templates (replies, system prompt, reports) and the default rules file.

Operators override any of them by putting a file of the same name in
`TIERBOT_TEMPLATES_DIR`.
"""
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
