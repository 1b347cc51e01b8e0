"""Local fake servers that speak real wire formats, shared by tests and bench scripts."""
