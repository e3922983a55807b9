"""Writes to runs, graphs and specialists go through these functions (``<entity>_<action>``)."""
