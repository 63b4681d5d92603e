"""Read-only views of the corpus: the Overview figures and Browse pages."""
