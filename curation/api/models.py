"""Request bodies of the HTTP API: pydantic models that refuse unknown fields and name the field that is wrong.

Place in the flow: FastAPI validates every body against these before a handler runs, so a bad request is answered
422 with ``detail`` naming the field, and nothing is read from or written to the database for it.

Example::

    DecisionBody.model_validate({"action": "merge", "tags": ["drums"], "into": "drum", "by": "ana"})
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str | None, Field(default=None, max_length=200,
                                   description="who is acting (without sign-in); must match a token's user")]
Reason = Annotated[str | None, Field(default=None, max_length=2000, description="why (stored with the decision)")]
TagText = Annotated[str, Field(min_length=1, max_length=500)]
TagList = Annotated[list[TagText], Field(min_length=1, max_length=10_000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Merge(Body):
    action: Literal["merge"]
    tags: TagList
    into: TagText
    by: Name = None
    reason: Reason = None


class Rename(Body):
    action: Literal["rename"]
    tag: TagText
    into: TagText
    by: Name = None
    reason: Reason = None


class Prune(Body):
    action: Literal["prune"]
    tags: TagList
    by: Name = None
    reason: Reason = None


class Restore(Body):
    action: Literal["restore"]
    tags: TagList
    by: Name = None
    reason: Reason = None


class ClipAdd(Body):
    action: Literal["clip_add"]
    clip_id: Annotated[str, Field(min_length=1, max_length=1000)]
    tag: TagText
    by: Name = None
    reason: Reason = None


class ClipRemove(Body):
    action: Literal["clip_remove"]
    clip_id: Annotated[str, Field(min_length=1, max_length=1000)]
    tag: TagText
    by: Name = None
    reason: Reason = None


class UseExtractors(Body):
    action: Literal["use_extractors"]
    extractors: TagList
    by: Name = None
    reason: Reason = None


class Undo(Body):
    action: Literal["undo"]
    decision_id: Annotated[int, Field(ge=1)]
    by: Name = None
    reason: Reason = None


DecisionBody = Annotated[Merge | Rename | Prune | Restore | ClipAdd | ClipRemove | UseExtractors | Undo,
                         Field(discriminator="action")]


class UndoBody(Body):
    by: Name = None
    reason: Reason = None


class AcceptMerge(Body):
    tags: Annotated[list[TagText], Field(min_length=2, max_length=1000)]
    canonical: TagText | None = None
    by: Name = None


class RejectMerge(Body):
    tags: Annotated[list[TagText], Field(min_length=2, max_length=1000)]
    by: Name = None


class RejectPrunes(Body):
    tags: TagList
    by: Name = None


class AcceptPrunes(Body):
    tags: TagList
    k: Annotated[int, Field(ge=1)]
    min_df: Annotated[int, Field(ge=1)] = 2
    by: Name = None


class ExportBody(Body):
    k: Annotated[int, Field(ge=1)]
    rank_by: Literal["tfidf", "df"] = "tfidf"
    by: Name = None


class CampaignBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    size: Annotated[int, Field(ge=1, le=1_000_000)]
    annotators: Annotated[int, Field(ge=1, le=100)] = 2
    seed: int = 0
    by: Name = None


class NextClipBody(Body):
    annotator: Name = None


class VerdictsBody(Body):
    clip_id: Annotated[str, Field(min_length=1, max_length=1000)]
    verdicts: dict[TagText, Literal["correct", "wrong", "unsure"]]
    added: list[TagText] | None = None
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    note: Annotated[str, Field(max_length=5000)] | None = None
    annotator: Name = None


class JobBody(Body):
    task: Literal["tags", "captions"] = "tags"
    backend: Literal["offline", "openai", "transformers"] = "offline"
    base_url: Annotated[str, Field(max_length=2000)] | None = None
    model: Annotated[str, Field(max_length=2000)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=512)] = 8
    limit: Annotated[int, Field(ge=1)] | None = None
    force: bool = False
    captioner: Annotated[str, Field(max_length=500)] | None = None
    by: Name = None


class LaunchBody(Body):
    ks: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=64)] = []
    export_id: Annotated[int, Field(ge=1)] | None = None
    rank_by: Literal["tfidf", "df"] = "tfidf"
    objective: Literal["mtc", "par", "mtc+par"] = "mtc"
    size: Literal["tiny", "small", "base"] = "tiny"
    steps: Annotated[int, Field(ge=1)] = 100
    device: Literal["cpu", "cuda"] = "cpu"
    gpus: Annotated[int, Field(ge=1, le=64)] = 1
    nodes: Annotated[int, Field(ge=1, le=1024)] = 1
    batch_seconds: Annotated[float, Field(gt=0)] | None = None
    lr: Annotated[float, Field(gt=0)] | None = None
    backend: Literal["local", "slurm"] = "local"
    partition: str | None = None
    time_limit: str | None = None
    by: Name = None


class CancelBody(Body):
    by: Name = None


class TokenBody(Body):
    user: Annotated[str, Field(min_length=1, max_length=200)]
    label: Annotated[str, Field(max_length=200)] | None = None
    by: Name = None


class CliBody(Body):
    argv: Annotated[list[Annotated[str, Field(max_length=10_000)]], Field(min_length=1, max_length=1000)]
    cwd: Annotated[str, Field(max_length=4096)] | None = None
    db: Annotated[str, Field(max_length=4096)] | None = None
