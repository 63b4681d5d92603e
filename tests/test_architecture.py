"""The floor plan holds: the import contracts of .importlinter (stages depend one way along the flow, the library
never imports streamlit, training never opens the database) and one settings registry that the README lists."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import PROJECT

from curation import settings


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports)], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_broken_layer_is_caught(tmp_path):
    # The contracts must be able to fail: a store module importing the vocabulary stage breaks the layers.
    package = tmp_path / "curation"
    for folder in ("store", "vocabulary", "cli", "api", "runs", "audit", "explore", "extraction", "demo", "ingest",
                   "admin"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "settings.py").write_text("")
    (package / "vocabulary" / "ranking.py").write_text("")
    (package / "store" / "schema.py").write_text("from curation.vocabulary import ranking\n")
    config = (PROJECT / ".importlinter").read_text()
    config = re.sub(r"root_packages =\n(    \S+\n)+", "root_packages =\n    curation\n", config)
    config = config.split("\n[importlinter:contract:library-without-streamlit]")[0]
    (tmp_path / ".importlinter").write_text(config)
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "curation.store.schema -> curation.vocabulary.ranking" in result.stdout


def test_every_setting_is_listed_in_the_readme_with_its_meaning_and_default():
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(UTS_[A-Z_]+)` \| (.+?) \| (.+?) \|$", section, re.M)
    assert {name: (meaning, default) for name, meaning, default in rows} == {
        s.name: (s.meaning, s.default) for s in settings.SETTINGS}


def test_no_module_reads_a_uts_variable_outside_the_settings_registry():
    offenders = []
    for path in [*PROJECT.glob("curation/**/*.py"), *PROJECT.glob("ui/*.py"), *PROJECT.glob("views/*.py"),
                 PROJECT / "app.py"]:
        if path.name == "settings.py":
            continue
        if re.search(r"""["']UTS_[A-Z_]+["']""", path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(PROJECT)))
    assert offenders == []
