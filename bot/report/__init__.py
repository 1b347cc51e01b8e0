"""The operators' daily report: computed from the ledger with SQL, rendered through
Jinja templates (text, markdown, json, html, Slack Block Kit)."""
from .compute import ReportInputs, compute_report
from .render import FORMATS, render_report, slack_message
from .service import ReportService

__all__ = ["ReportInputs", "compute_report", "FORMATS", "render_report", "slack_message", "ReportService"]
