"""UTS Studio library: ingest, store, curation and audit of machine-captioned audio tags (never imports streamlit)."""
