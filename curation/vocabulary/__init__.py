"""The vocabulary stage: decisions and their log, replay -> ranking -> coverage, merge / prune suggestions, embeddings, the tag map, and export."""
