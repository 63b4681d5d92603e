"""Typed errors of training/: each says what failed, where, what was found, what was expected and the fix.

They subclass the library's ``UtsError`` so that one ``except UtsError`` (and exit code 2) covers both CLIs.
Example: ``raise UnknownTagError(cuts_path, 12, "clip-7", ["dog"], label_file)``.
"""
from __future__ import annotations

from pathlib import Path

from curation.errors import UsageError, UtsError

__all__ = ["UtsError", "UsageError", "ExportError", "UnknownTagError", "ConfigKeyError", "ConfigValueError",
           "TaskFileError", "CheckpointError", "AudioError"]


class ExportError(UtsError):
    """An export directory lacks a file or holds a file that is not in the export format."""

    def __init__(self, path: str | Path, found: str, expected: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: expected {expected}, found {found} ({fix})")


class UnknownTagError(UtsError):
    """A clip in the cuts carries a tag that the export's label map does not hold."""

    def __init__(self, cuts_path: str | Path, line: int, clip_id: str, unknown: list[str],
                 label_file: str | Path) -> None:
        self.clip_id = clip_id
        self.unknown = unknown
        super().__init__(
            f"{cuts_path}:{line}: clip '{clip_id}' has tags {unknown} that are not in the label map {label_file}; "
            "expected every supervisions[0].custom.audio_tag to be a label of the export "
            "(re-export the vocabulary so that cuts and label map agree)")


class ConfigKeyError(UsageError):
    """``--set key=value`` named a key that TrainConfig does not have."""

    def __init__(self, key: str, valid: list[str]) -> None:
        self.key = key
        super().__init__(f"--set {key}=...: unknown config key '{key}'; valid keys: {', '.join(valid)}")


class ConfigValueError(UsageError):
    """A config value does not parse as its field's type or is out of range."""

    def __init__(self, key: str, found: object, expected: str) -> None:
        super().__init__(f"config field '{key}': expected {expected}, found {found!r} (fix the --set value or flag)")


class TaskFileError(UtsError):
    """A probe task file (CSV/JSONL) is missing, empty, or a row lacks a required field."""

    def __init__(self, path: str | Path, line: int | None, found: str, expected: str, fix: str) -> None:
        where = str(path) if line is None else f"{path}:{line}"
        super().__init__(f"{where}: expected {expected}, found {found} ({fix})")


class CheckpointError(UtsError):
    """A checkpoint path is missing or does not hold what training.pretrain writes."""

    def __init__(self, path: str | Path, found: str, expected: str, fix: str) -> None:
        super().__init__(f"{path}: expected {expected}, found {found} ({fix})")


class AudioError(UtsError):
    """An audio file named by a cut or a task row cannot be read."""

    def __init__(self, path: str | Path, clip_id: str, detail: str) -> None:
        super().__init__(f"{path}: audio of clip '{clip_id}' cannot be read: {detail} "
                         "(check that the file exists and is WAV/FLAC/OGG readable by soundfile)")
