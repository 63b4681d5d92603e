"""Backends that turn captions into tag answers, or audio into captions: a model server, a local model, or rules.

Place in the flow: extract / caption. ``curation/extraction/jobs.py`` owns the job (what to do, resuming, writing);
a backend only answers: ``backend.answers(requests)`` yields one ``Answer`` per request, in any order, with the
raw text the model produced or the error that stopped it. Parsing the text is the job's business, so every
backend's answers go through the same parser.

Backends:
- ``OpenAIChatBackend``: one or several OpenAI-compatible chat-completions servers (vLLM, Ollama, llama.cpp,
  TGI), ``concurrency`` requests in flight per server, timeouts, retries with backoff on 429/5xx/connection
  errors (the openai client's own: exponential, honours Retry-After), JSON output requested and dropped per server
  if it refuses it. Several servers are kept busy together (curation/extraction/server_pool.py): faster servers
  take more requests, a failing server is taken out of rotation and its requests are re-sent elsewhere, and
  ``server_report()`` says who answered what. With ``audio=True`` it sends the clip's audio as an
  ``input_audio`` part (how vLLM serves audio captioners such as Qwen3-Omni-30B-A3B-Captioner).
- ``TransformersChatBackend``: a local causal LM from a path, batched generation (for a GPU node).
- ``TransformersCaptionBackend``: a local audio-to-text model from a path (speech-seq2seq family).
- ``OpenVocabTagBackend`` (``offline``, the default for tags): the open-vocabulary spaCy extractor
  (curation/extraction/open_vocab.py), no server or GPU; several worker processes for large jobs.
- ``OfflineTagBackend`` (``lexicon``): the deterministic closed-lexicon extractor (curation/extraction/offline_tagger.py).

Example::

    backend = OpenAIChatBackend(base_url="http://127.0.0.1:8000/v1", model="Qwen2.5-7B-Instruct", concurrency=32)
    # several servers: base_url=["http://gpu1:8000/v1", "http://gpu2:8000/v1"] or "http://gpu1:8000/v1,http://..."
    for answer in backend.answers([Request(key=1, messages=messages_for("A dog barks"))]):
        print(answer.key, answer.text, answer.error)
"""
from __future__ import annotations

import asyncio
import base64
import io
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from curation.errors import UsageError

DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 4
DEFAULT_DROP_AFTER = 5  # server-level failures in a row that take a server out of rotation, health check or not
DEFAULT_REPROBE_S = 30.0  # a dropped server is checked again this often and rejoins when it answers (0: never)
# Tag backends by name, the default first: what the CLI and the app's Tagging page offer.
OFFLINE_TAG_BACKENDS = ("offline", "lexicon")  # open-vocabulary spaCy extractor; closed audio lexicon
TAG_BACKENDS = (*OFFLINE_TAG_BACKENDS, "openai", "transformers")
DEFAULT_TAG_BACKEND = TAG_BACKENDS[0]


@dataclass(frozen=True)
class Request:
    key: int  # the clip_key the answer belongs to
    messages: list[dict] = field(default_factory=list)  # chat messages (text part)
    text: str | None = None  # the caption itself (rule-based backends read it instead of the prompt)
    audio_path: str | None = None  # audio to attach (captioning)


@dataclass(frozen=True)
class Answer:
    key: int
    text: str | None  # what the model answered (None when it did not answer)
    error: str | None  # why there is no usable answer (None on success)
    attempts: int = 1
    server: str | None = None  # the base URL that answered (OpenAI-compatible backend)


class BackendUnavailable(UsageError):
    """The backend cannot start: a missing package, model path or server. Says which and how to fix it."""


class ServersUnavailable(BackendUnavailable):
    """Every server of an OpenAI-compatible job was taken out of rotation: the job stops, and every answer received
    before is recorded (run it again to continue). ``servers``: the per-server report (url, state, answered,
    errors, reason); ``answered``: answers handed to the job."""

    def __init__(self, servers: list[dict], answered: int, at_start: bool) -> None:
        self.servers = servers
        self.answered = answered
        if at_start and len(servers) == 1:
            message = (f"--base-url {servers[0]['url']}: no connection ({servers[0]['reason']}); is the server "
                       "running and the URL right (it ends in /v1)?")
        else:
            reasons = "; ".join(f"{s['url']}: {s['reason']} (answered {s['answered']})" for s in servers)
            message = (f"all {len(servers)} server(s) failed and were taken out of rotation: {reasons}. "
                       f"{answered} answer(s) were received and are recorded; clips not answered were not "
                       "attempted: run the same command again to continue once a server answers (is it running "
                       "and does its URL end in /v1?)")
        super().__init__(message)


def parse_base_urls(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The server URLs of ``--base-url``: one value or several (repeated flag), each a comma or space separated
    list; trailing slashes dropped. A URL without http(s):// or listed twice is a UsageError naming it."""
    values = [value] if isinstance(value, str) else list(value or ())
    urls: list[str] = []
    for entry in values:
        for url in (entry or "").replace(",", " ").split():
            url = url.rstrip("/")
            if not url.lower().startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
                raise UsageError(f"--base-url {url!r}: expected a server URL starting with http:// or https:// and "
                                 "ending in /v1, e.g. http://127.0.0.1:8000/v1")
            if url in urls:
                raise UsageError(f"--base-url {url}: listed twice (each server once; --concurrency is per server)")
            urls.append(url)
    return tuple(urls)


# ------------------------------------------------------------------------------------------ OpenAI-compatible

class OpenAIChatBackend:
    """Chat completions against one or several OpenAI-compatible servers, ``concurrency`` requests in flight on
    each (see curation/extraction/server_pool.py for how several are kept busy and how a failing one is handled)."""

    name = "openai"

    def __init__(self, *, base_url: str | Sequence[str], model: str, concurrency: int = DEFAULT_CONCURRENCY,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES, temperature: float = 0.3,
                 top_p: float | None = None, max_tokens: int = 200, json_output: bool = True,
                 api_key_env: str = "OPENAI_API_KEY", audio: bool = False, drop_after: int = DEFAULT_DROP_AFTER,
                 reprobe_s: float = DEFAULT_REPROBE_S) -> None:
        try:
            import openai  # noqa: F401  (checked here so that a missing package is a clear message)
        except ImportError:
            raise BackendUnavailable("the openai backend needs the 'openai' package: pip install openai") from None
        urls = parse_base_urls(base_url)
        if not urls:
            raise UsageError("--base-url is required for --backend openai (e.g. http://127.0.0.1:8000/v1; repeat it "
                             "or give a comma list for several servers)")
        if not model:
            raise UsageError("--model is required for --backend openai (the name the server serves)")
        if concurrency < 1:
            raise UsageError(f"--concurrency {concurrency}: expected at least 1")
        if drop_after < 1:
            raise UsageError(f"--drop-after {drop_after}: expected at least 1 failure in a row")
        if reprobe_s < 0:
            raise UsageError(f"--reprobe-s {reprobe_s:g}: expected 0 (never) or more seconds")
        self.base_urls = urls
        self.base_url = ",".join(urls)  # as given to --base-url (one URL, or the comma list)
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self._json_requested = json_output and not audio
        self._json_refused: set[str] = set()  # servers that refused JSON mode (asked in plain text from then on)
        self.api_key = os.environ.get(api_key_env) or "EMPTY"  # local servers accept any key
        self.audio = audio
        self.drop_after = drop_after
        self.reprobe_s = reprobe_s
        self._stop = threading.Event()
        self._pool = None

    @property
    def json_output(self) -> bool:
        """JSON mode is asked for (False once every server refused it)."""
        return self._json_requested and not set(self.base_urls) <= self._json_refused

    def json_for(self, url: str) -> bool:
        return self._json_requested and url not in self._json_refused

    @property
    def settings(self) -> dict:
        return {"base_url": self.base_url, "model": self.model, "temperature": self.temperature,
                "top_p": self.top_p, "max_tokens": self.max_tokens, "json_output": self.json_output,
                "concurrency": self.concurrency, "timeout_s": self.timeout_s, "retries": self.retries,
                **({"servers": len(self.base_urls), "drop_after": self.drop_after, "reprobe_s": self.reprobe_s}
                   if len(self.base_urls) > 1 else {})}

    def server_report(self) -> list[dict]:
        """Per server of the current (or last) call of ``answers``: url, state (live | dropped), answered,
        errors, mean_ms, drops, rejoins, reason (why it was taken out of rotation)."""
        return self._pool.report() if self._pool is not None else []

    def stop(self) -> None:
        self._stop.set()

    def answers(self, requests: Iterable[Request]) -> Iterator[Answer]:
        """Answers as they arrive; the event loop runs in a helper thread so that callers stay synchronous.
        Raises ``ServersUnavailable`` (after yielding every answer received) when no server is left."""
        from curation.extraction.server_pool import ServerPool

        out: queue.Queue = queue.Queue()
        finished = object()
        self._stop = threading.Event()  # per call: stop() ends this call, a later call starts afresh
        pool = self._pool = ServerPool(self, list(self.base_urls), iter(requests), out, self._stop)

        def run() -> None:
            try:
                asyncio.run(pool.run())
            except BaseException as exc:  # handed to the consumer, which re-raises it in its own thread
                out.put(exc)
            out.put(finished)

        worker = threading.Thread(target=run, name="openai-backend", daemon=True)
        worker.start()
        try:
            while True:
                item = out.get()
                if item is finished:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            worker.join(timeout=self.timeout_s + 5)

    async def ask(self, server, request: Request) -> tuple[Answer, str | None]:
        """One request to one server: (answer, None), or (answer with the error, fault) when the failure is the
        server's (fault: 'connection', 'timeout' or 'status'), which the pool may re-send elsewhere."""
        import openai

        try:
            messages = await asyncio.to_thread(_with_audio, request) if self.audio else request.messages
        except OSError as exc:
            return Answer(request.key, None, f"audio unreadable: {exc}"), None
        kwargs = {"model": self.model, "messages": messages, "temperature": self.temperature,
                  "max_tokens": self.max_tokens}
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        for _ in range(2):
            json_mode = self.json_for(server.url)
            if json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            else:
                kwargs.pop("response_format", None)
            try:
                # The client's generic POST keeps its retries, backoff, timeouts and typed errors but skips the
                # typed-parameter transform of ``chat.completions.create`` (~2 ms of CPU per request, which at
                # 32 requests in flight would make this client, not the server, the bottleneck).
                response = await server.client.post("/chat/completions", body=kwargs, cast_to=object)
            except openai.BadRequestError as exc:
                if json_mode and "response_format" in str(exc).lower():
                    self._json_refused.add(server.url)  # this server does not do JSON mode: plain text from now on
                    continue
                return Answer(request.key, None, f"HTTP 400: {short_error(exc)}"), None
            except openai.APITimeoutError:
                return Answer(request.key, None, f"timed out after {self.timeout_s:g} s ({self.retries} retries)"), \
                    "timeout"
            except openai.APIConnectionError as exc:
                return Answer(request.key, None, f"connection failed ({self.retries} retries): {short_error(exc)}"), \
                    "connection"
            except openai.APIStatusError as exc:
                fault = "status" if exc.status_code >= 500 or exc.status_code == 429 else None
                return Answer(request.key, None,
                              f"HTTP {exc.status_code} after {self.retries} retries: {short_error(exc)}"), fault
            except openai.APIResponseValidationError as exc:
                return Answer(request.key, None, f"malformed response: {short_error(exc)}"), None
            try:
                content = response["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                return Answer(request.key, str(response)[:2000], "the server's answer has no choices[0].message"), None
            return Answer(request.key, content if isinstance(content, str) else "", None), None
        return Answer(request.key, None, "the server refused the request"), None


def short_error(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text[:limit]


def _with_audio(request: Request) -> list[dict]:
    """The request's messages with its audio appended to the last user message as an ``input_audio`` part."""
    if not request.audio_path:
        raise OSError("the clip has no audio path")
    data, fmt = _audio_bytes(Path(request.audio_path))
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode("ascii"), "format": fmt}}
    messages = [dict(m) for m in request.messages]
    last = messages[-1]
    text = last["content"] if isinstance(last["content"], str) else None
    last["content"] = ([{"type": "text", "text": text}] if text else list(last["content"] or [])) + [part]
    return messages


def _audio_bytes(path: Path) -> tuple[bytes, str]:
    """WAV/MP3/FLAC bytes as they are; anything else soundfile reads is re-encoded as WAV."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("wav", "mp3", "flac"):
        return path.read_bytes(), suffix
    import soundfile

    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), "wav"


# ------------------------------------------------------------------------------------------ local transformers

class _LocalModelBackend:
    """What both local transformers backends share: a model folder checked up front, its name as the producer's
    model, batch size, generation length, device and a stop switch."""

    name = "transformers"
    what = "model"  # said in the error when the folder is missing

    def __init__(self, *, model: str, batch_size: int, max_new_tokens: int, device: str | None) -> None:
        if not model:
            raise UsageError(f"--model is required for --backend transformers: a local folder holding the {self.what}")
        if not Path(model).is_dir():
            raise BackendUnavailable(f"--model {model}: no such folder; expected a local folder with the {self.what} "
                                     "(config.json, weights, tokenizer), e.g. from `huggingface-cli download` "
                                     "elsewhere")
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"the transformers backend needs torch and transformers: {exc}") from None
        self.model_path = model
        self.model = Path(model).name
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._stop = threading.Event()

    @property
    def settings(self) -> dict:
        return {"model_path": str(Path(self.model_path).resolve()), "max_new_tokens": self.max_new_tokens,
                "batch_size": self.batch_size, "device": str(self.device)}

    def stop(self) -> None:
        self._stop.set()


class TransformersChatBackend(_LocalModelBackend):
    """A causal LM from a local folder, prompts batched (left padding) through ``generate``."""

    what = "causal language model"

    def __init__(self, *, model: str, batch_size: int = 16, max_new_tokens: int = 96, temperature: float = 0.3,
                 device: str | None = None) -> None:
        super().__init__(model=model, batch_size=batch_size, max_new_tokens=max_new_tokens, device=device)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.temperature = temperature
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()

    @property
    def settings(self) -> dict:
        return {**super().settings, "temperature": self.temperature}

    def _prompt(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n"

    def answers(self, requests: Iterable[Request]) -> Iterator[Answer]:
        import torch

        for batch in _batches(requests, self.batch_size):
            if self._stop.is_set():
                return
            prompts = [self._prompt(r.messages) for r in batch]
            encoded = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
            sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {
                "do_sample": False}
            with torch.inference_mode():
                generated = self.lm.generate(**encoded, max_new_tokens=self.max_new_tokens,
                                             pad_token_id=self.tokenizer.pad_token_id, **sampling)
            new_tokens = generated[:, encoded["input_ids"].shape[1]:]
            for request, text in zip(batch, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                yield Answer(request.key, text, None)


class TransformersCaptionBackend(_LocalModelBackend):
    """An audio-to-text model from a local folder (AutoModelForSpeechSeq2Seq + AutoProcessor), batched."""

    what = "audio captioning model"

    def __init__(self, *, model: str, batch_size: int = 8, max_new_tokens: int = 256, device: str | None = None,
                 sample_rate_hz: int = 16_000) -> None:
        super().__init__(model=model, batch_size=batch_size, max_new_tokens=max_new_tokens, device=device)
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        self.sample_rate_hz = sample_rate_hz
        self.processor = AutoProcessor.from_pretrained(model)
        self.net = AutoModelForSpeechSeq2Seq.from_pretrained(model).to(self.device).eval()

    @property
    def settings(self) -> dict:
        return {**super().settings, "sample_rate_hz": self.sample_rate_hz}

    def answers(self, requests: Iterable[Request]) -> Iterator[Answer]:
        import torch

        for batch in _batches(requests, self.batch_size):
            if self._stop.is_set():
                return
            waves, readable = [], []
            for request in batch:
                try:
                    waves.append(load_audio_mono(request.audio_path, self.sample_rate_hz))
                    readable.append(request)
                except OSError as exc:
                    yield Answer(request.key, None, f"audio unreadable: {exc}")
            if not readable:
                continue
            inputs = self.processor(waves, sampling_rate=self.sample_rate_hz, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                generated = self.net.generate(**inputs, max_new_tokens=self.max_new_tokens)
            for request, text in zip(readable, self.processor.batch_decode(generated, skip_special_tokens=True)):
                yield Answer(request.key, text, None)


def load_audio_mono(path: str | None, sample_rate_hz: int):
    """Mono float32 samples at ``sample_rate_hz`` (polyphase resampling when the file's rate differs)."""
    import numpy as np
    import soundfile

    if not path:
        raise OSError("the clip has no audio path")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise OSError(str(exc)) from None
    samples = samples.mean(axis=1)
    if rate != sample_rate_hz:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(rate, sample_rate_hz)
        samples = resample_poly(samples, sample_rate_hz // g, rate // g).astype(np.float32)
    return samples


# ------------------------------------------------------------------------------------------ offline

class OpenVocabTagBackend:
    """Open-vocabulary tags from spaCy (curation/extraction/open_vocab.py), the default ``extract-tags`` backend;
    answers in the same JSON the LLMs are asked for, so one parser (and one spelling rule) serves all.

    Producer ``offline:open-vocab-v1`` (the lexicon extractor's rows stay ``offline:lexicon-v1``). Its prompt
    version is a fingerprint of the rules, the lexicon folds and the spaCy model, so changing any of them makes
    every clip eligible again. The first batch is tagged in this process; later batches go to ``processes``
    worker processes (started only for jobs larger than one batch, since each loads the model, ~2 s)."""

    name = "offline"

    def __init__(self, processes: int | None = None, batch_size: int = 512) -> None:
        from curation.extraction.open_vocab import EXTRACTOR_VERSION, PipelineUnavailable, pipeline_fingerprint

        if processes is not None and processes < 1:
            raise UsageError(f"--processes {processes}: expected at least 1")
        try:
            self.prompt_hash = pipeline_fingerprint()
        except PipelineUnavailable as exc:
            raise BackendUnavailable(str(exc)) from None
        from curation.extraction.open_vocab import load_pipeline

        meta = load_pipeline().meta
        self.model = EXTRACTOR_VERSION
        self.pipeline = f"{meta.get('lang', 'en')}_{meta.get('name')}-{meta.get('version')}"
        self.processes = processes if processes is not None else default_processes()
        self.batch_size = batch_size
        self._stop = threading.Event()

    @property
    def settings(self) -> dict:
        from curation.extraction.open_vocab import MAX_TAGS

        return {"extractor": self.model, "spacy_pipeline": self.pipeline, "processes": self.processes,
                "max_tags": MAX_TAGS}

    def stop(self) -> None:
        self._stop.set()

    def answers(self, requests: Iterable[Request]) -> Iterator[Answer]:
        import json

        from curation.extraction.open_vocab import CaptionTagger, OpenVocabExtractor

        self._stop = threading.Event()
        local = OpenVocabExtractor()
        batches = _batches(requests, self.batch_size)

        def answered(batch: list[Request], tag_lists: list[tuple[str, ...]]) -> Iterator[Answer]:
            for request, tags in zip(batch, tag_lists):
                yield Answer(request.key, json.dumps({"labels": list(tags)}), None)

        first = next(batches, None)
        if first is None:
            return
        yield from answered(first, local.tag_many([request.text or "" for request in first]))
        if self.processes == 1:
            for batch in batches:
                if self._stop.is_set():
                    return
                yield from answered(batch, local.tag_many([request.text or "" for request in batch]))
            return
        pool = CaptionTagger(self.processes)
        held: list[list[Request]] = []

        def texts() -> Iterator[list[str]]:
            for batch in batches:
                if self._stop.is_set():
                    return
                held.append(batch)
                yield [request.text or "" for request in batch]

        try:
            for tag_lists in pool.tag_batches(texts()):
                yield from answered(held.pop(0), tag_lists)
                if self._stop.is_set():
                    return
        finally:
            pool.close(abandon=self._stop.is_set() or bool(held))


def default_processes() -> int:
    """Worker processes for the open-vocabulary extractor: one per core, at most 4 (each holds the model)."""
    return max(1, min(4, os.cpu_count() or 1))


class OfflineTagBackend:
    """Deterministic lexicon tags (``--backend lexicon``); answers in the same JSON the LLMs are asked for, so one
    parser serves all. Its rows keep the producer they always had, ``offline:lexicon-v1``."""

    name = "offline"
    model = "lexicon-v1"

    def __init__(self, vocabulary: Sequence[str] | None = None) -> None:
        import hashlib
        import json

        from curation.extraction.lexicon import FORMS

        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        # The offline extractor's "prompt" is its lexicon: editing the lexicon makes every clip eligible again.
        self.prompt_hash = "lex-" + hashlib.sha256(json.dumps(sorted(FORMS.items())).encode()).hexdigest()[:12]

    @property
    def settings(self) -> dict:
        return {"lexicon": self.model, "vocabulary_terms": len(self.vocabulary or ())}

    def stop(self) -> None:
        pass

    def answers(self, requests: Iterable[Request]) -> Iterator[Answer]:
        import json

        from curation.extraction.offline_tagger import VocabularyTable, tag_caption

        table = VocabularyTable(self.vocabulary) if self.vocabulary else None  # prepared once per job
        for request in requests:
            labels = tag_caption(request.text or "", table)
            yield Answer(request.key, json.dumps({"labels": list(labels)}), None)


def build_backend(backend: str, task: str, *, base_url: str | Sequence[str] | None = None, model: str | None = None,
                  concurrency: int = DEFAULT_CONCURRENCY, timeout_s: float = DEFAULT_TIMEOUT_S,
                  retries: int = DEFAULT_RETRIES, temperature: float | None = None, top_p: float | None = None,
                  max_tokens: int | None = None, api_key_env: str = "OPENAI_API_KEY", batch_size: int = 16,
                  device: str | None = None, vocabulary: Sequence[str] | None = None, processes: int | None = None,
                  drop_after: int = DEFAULT_DROP_AFTER, reprobe_s: float = DEFAULT_REPROBE_S):
    """The backend for ``task`` ('tags' or 'captions') by name; typed errors for what is missing or unknown.

    ``base_url``: one server URL, a comma list, or a sequence of them (the openai backend spreads the job over
    all of them; ``concurrency`` is per server).

    ``offline`` (the default of ``extract-tags``) is the open-vocabulary extractor; ``lexicon`` the closed-lexicon
    one (``vocabulary``: extra corpus tags it may match)."""
    temperature = (0.3 if task == "tags" else 0.6) if temperature is None else temperature
    max_tokens = (200 if task == "tags" else 1024) if max_tokens is None else max_tokens
    if backend in OFFLINE_TAG_BACKENDS:
        if task != "tags":
            raise UsageError(f"the {backend} backend only tags captions; captioning needs --backend openai or "
                             "transformers")
        return OpenVocabTagBackend(processes) if backend == "offline" else OfflineTagBackend(vocabulary)
    if backend == "openai":
        return OpenAIChatBackend(base_url=base_url or "", model=model or "", concurrency=concurrency,
                                 timeout_s=timeout_s, retries=retries, temperature=temperature, top_p=top_p,
                                 max_tokens=max_tokens, api_key_env=api_key_env, audio=(task == "captions"),
                                 drop_after=drop_after, reprobe_s=reprobe_s)
    if backend == "transformers":
        if task == "tags":
            return TransformersChatBackend(model=model or "", batch_size=batch_size, max_new_tokens=max_tokens,
                                           temperature=temperature, device=device)
        return TransformersCaptionBackend(model=model or "", batch_size=batch_size, max_new_tokens=max_tokens,
                                          device=device)
    raise UsageError(f"backend {backend!r}: expected one of {', '.join(TAG_BACKENDS)}")


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

