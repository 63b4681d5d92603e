"""Ingest: manifests (Lhotse cuts, flat JSONL / CSV / Parquet, audio folders) -> clips, captions, tags; the caption text index; which audio files may be served."""
