"""The local transformers backend, on a tiny causal LM written by the test (no model hub here)."""
from __future__ import annotations

import pytest

from curation.extraction import run_job
from curation.extraction_backends import BackendUnavailable, Request, TransformersChatBackend
from curation.ingest import ingest_path
from curation.tag_prompt import messages_for
from helpers import write_jsonl

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
