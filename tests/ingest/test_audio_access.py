"""Audio is served only from the configured roots; clip pictures are real PNGs of the audio."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from helpers import make_cut, write_jsonl

from curation import settings
from curation.ingest.audio_access import AudioAccessError, audio_roots, clip_picture_png, servable_audio_path
from curation.ingest.ingest import ingest_path


@pytest.fixture
def corpus(con, tmp_path):
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    soundfile.write(root / "audio" / "a.wav", tone, 16000)
    outside = tmp_path / "secret.wav"
    soundfile.write(outside, tone, 16000)
    (root / "audio" / "link.wav").symlink_to(outside)
    ingest_path(con, write_jsonl(root / "cuts.jsonl", [make_cut("a", source="audio/a.wav")]))
    return root, outside


def test_only_files_under_the_roots_are_served(con, corpus, monkeypatch):
    root, outside = corpus
    monkeypatch.delenv(settings.AUDIO_ROOTS.name, raising=False)
    assert audio_roots(con) == [root.resolve()]
    assert servable_audio_path(con, str(root / "audio" / "a.wav")) == (root / "audio" / "a.wav").resolve()
    for hostile in (str(root / "audio" / ".." / ".." / "secret.wav"), str(outside), "/etc/passwd",
                    str(root / "audio" / "link.wav"), "../../etc/passwd", ""):
        with pytest.raises(AudioAccessError):
            servable_audio_path(con, hostile)
    monkeypatch.setenv(settings.AUDIO_ROOTS.name, str(outside.parent))
    assert servable_audio_path(con, str(outside)) == outside.resolve()


def test_clip_picture_is_a_png_of_the_audio(corpus):
    root, _ = corpus
    png = clip_picture_png(root / "audio" / "a.wav")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from io import BytesIO

    from PIL import Image

    image = np.asarray(Image.open(BytesIO(png)).convert("L"))
    assert image.shape == (188, 600)
    spectrogram = image[60:]
    # A 440 Hz tone: one bright band, the rest dark.
    assert spectrogram.max(axis=1).std() > 20
