"""Tagging and captioning jobs for clips that arrive without tags or captions: the job, its backends (OpenAI-compatible server, local model, offline rules), the prompt and the offline lexicon."""
