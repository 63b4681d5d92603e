"""Encoder pre-training (MTC, PAR) on a UTS export and frozen-encoder probing; writes run directories.

Place in the flow: export (label_K.json + cuts.jsonl.gz) -> ``python -m training.pretrain`` -> run dir ->
``python -m training.probe`` -> results.jsonl -> imported by curation. Never opens the database.
Nothing heavy is imported here: torch and lhotse load in the submodules that need them.
Example: ``python -m training.pretrain --export exports/v800 --out runs/r1 --objective mtc --size tiny --steps 100``
"""
