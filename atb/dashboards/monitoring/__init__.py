"""The monitoring dashboard: one paper/live (or past) session, updated by streaming."""
