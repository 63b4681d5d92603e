"""The local transformers backend, on a tiny causal LM written by the test (no model hub here)."""
from __future__ import annotations

import pytest
from helpers import write_jsonl

from curation.extraction.backends import BackendUnavailable, Request, TransformersChatBackend
from curation.extraction.jobs import run_job
from curation.extraction.prompt import messages_for
from curation.ingest.ingest import ingest_path

WORDS = ("dog bark rain wind engine music speech labels the a is in on of with and description audio clip answer "
         "json object only").split()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A 1-layer GPT-2 with a word-level tokenizer, saved as a local folder the way a downloaded model is."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-lm")
    vocab = {token: i for i, token in enumerate(["[UNK]", "[EOS]", "{", "}", "[", "]", ":", ",", '"', *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token="[EOS]")
    tokenizer.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=32, n_layer=1, n_head=2,
                                       eos_token_id=1, bos_token_id=1))
    model.save_pretrained(folder)
    return folder


def test_batched_generation_matches_one_prompt_at_a_time(tiny_lm):
    backend = TransformersChatBackend(model=str(tiny_lm), batch_size=3, max_new_tokens=8, temperature=0,
                                      device="cpu")
    captions = ["a dog", "rain and wind on the engine of a audio clip", "music"]
    requests = [Request(key=i, messages=messages_for(c), text=c) for i, c in enumerate(captions)]
    batched = {a.key: a.text for a in backend.answers(requests)}
    single = TransformersChatBackend(model=str(tiny_lm), batch_size=1, max_new_tokens=8, temperature=0,
                                     device="cpu")
    alone = {a.key: a.text for a in single.answers(requests)}
    assert batched == alone  # left padding and the attention mask make batching invisible
    assert all(isinstance(text, str) for text in batched.values())


def test_local_model_job_records_what_the_model_said(con, tmp_path, tiny_lm):
    rows = [{"id": f"c{i}", "caption": f"a dog and rain number {i}"} for i in range(5)]
    ingest_path(con, write_jsonl(tmp_path / "c.jsonl", rows))
    backend = TransformersChatBackend(model=str(tiny_lm), batch_size=2, max_new_tokens=6, temperature=0,
                                      device="cpu")
    report = run_job(con, backend, task="tags")
    assert report.producer == "transformers:" + tiny_lm.name and report.done + report.failed == 5
    attempts = con.execute("SELECT ok, raw_answer, error FROM extraction_attempts").fetchall()
    assert len(attempts) == 5
    # An untrained model answers gibberish: recorded failures with the raw answer, never a crash or silence.
    for ok, raw, error in attempts:
        assert raw is not None
        assert ok or error.startswith("unparseable answer")


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailable) as caught:
        TransformersChatBackend(model=str(tmp_path / "nowhere"))
    assert "no such folder" in str(caught.value) and "nowhere" in str(caught.value)


@pytest.fixture(scope="module")
def tiny_captioner(tmp_path_factory):
    """A 1-layer Whisper-architecture audio-to-text model with a word-level tokenizer, saved as a local folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    folder = tmp_path_factory.mktemp("tiny-captioner")
    words = ["<|endoftext|>", "<|startoftranscript|>", *WORDS]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = WhisperTokenizerFast(tokenizer_object=core, unk_token="<|endoftext|>", bos_token="<|startoftranscript|>",
                                     eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(words), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_target_positions=32, num_mel_bins=80,
        decoder_start_token_id=1, pad_token_id=0, eos_token_id=0, bos_token_id=1))
    model.generation_config = GenerationConfig(decoder_start_token_id=1, eos_token_id=0, pad_token_id=0)
    model.save_pretrained(folder)
    return folder


def test_local_captioner_job_reads_and_resamples_audio(con, tmp_path, tiny_captioner):
    import numpy as np
    import soundfile

    from curation.extraction.backends import TransformersCaptionBackend

    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    soundfile.write(tmp_path / "a" / "s16k.wav", (0.1 * rng.standard_normal(16_000)).astype("float32"), 16_000)
    soundfile.write(tmp_path / "a" / "s8k.flac", (0.1 * rng.standard_normal(8_000)).astype("float32"), 8_000)
    rows = [{"id": "s16k", "audio_path": "a/s16k.wav"}, {"id": "s8k", "audio_path": "a/s8k.flac"},
            {"id": "missing", "audio_path": "a/missing.wav"}]
    ingest_path(con, write_jsonl(tmp_path / "clips.jsonl", rows))
    backend = TransformersCaptionBackend(model=str(tiny_captioner), batch_size=2, max_new_tokens=4, device="cpu")
    report = run_job(con, backend, task="captions")
    assert report.producer == "transformers:" + tiny_captioner.name and report.planned == 3
    attempts = dict(con.execute("""SELECT c.clip_id, a.error FROM extraction_attempts a JOIN clips c
                                   USING (clip_key)""").fetchall())
    assert attempts["missing"].startswith("audio unreadable")
    # Both readable files (one at 8 kHz, resampled) went through the model: a caption or a recorded empty answer.
    for clip_id in ("s16k", "s8k"):
        assert attempts[clip_id] in (None, "empty caption")
