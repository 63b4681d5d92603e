"""``python -m curation <command>``: every pipeline step as a batch command (``main.py`` dispatches; one module per command family)."""
