"""The README and docs: self-contained, one interpreter, and numbers that agree with the code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from engine.pretrain_setup import SIZE_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
SKIPPED = {".git", ".venv", "checkpoints", "logs", "results", "datasets", "demo_data", ".cache"}


def _repository_files() -> list[Path]:
    """Tracked and untracked files that git does not ignore (every file below the root if this is
    no git checkout, but the ignored folders)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout
        return [REPO / name for name in listed.splitlines() if (REPO / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in REPO.rglob("*") if p.is_file()
                and not SKIPPED & set(p.relative_to(REPO).parts)]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    outside = "DESIGN" + ".md"  # a design note that a clone does not contain
    citing = []
    for path in _repository_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary files
        if outside in text:
            citing.append(str(path.relative_to(REPO)))
    assert citing == []
    for doc in re.findall(r"docs/[A-Z0-9_]+\.md", README):
        assert (REPO / doc).is_file(), f"README cites {doc}, which does not exist"


def test_commands_use_the_venv_interpreter() -> None:
    """The README and the docs moved out of it name the interpreter the Makefile installs."""
    bare = re.compile(r"(?<![\w/.])(python|torchrun) (-m |\w+\.py|--)")
    for path in (REPO / "README.md", REPO / "docs" / "STAGE1.md", REPO / "docs" / "PROTOCOLS.md"):
        found = [line for line in path.read_text().splitlines() if bare.search(line)]
        assert found == [], f"{path.name}: {found[:3]}"


def test_readme_shows_how_to_try_one_script_and_to_score_images() -> None:
    assert ".venv/bin/python -m data.demo --out demo_data" in README
    assert "\n### 6. Score your own images\n" in README


def test_readme_crop_pairs_agree_with_the_code() -> None:
    chain = (REPO / "run_qualiclip_experiments.sh").read_text()
    demo_block = chain.split("if [[ $DEMO == 1 ]]; then")[1].split("\nfi\n")[0]
    demo_views = int(re.search(r'"\$\{PRETRAIN_VIEWS:=(\d+)\}"', demo_block).group(1))
    recipe_views = SIZE_DEFAULTS["mini"]["views_per_image"]
    text = " ".join(README.split())
    assert f"with {WORDS[demo_views]} crop pair{'s' if demo_views > 1 else ''} per image" in text
    assert f"the mini recipe's default is {WORDS[recipe_views]}" in text
    assert f"{WORDS[recipe_views]} crop pairs of every image per epoch" in text
    assert f"(`--views_per_image {recipe_views}`)" in text
    assert f"`PRETRAIN_VIEWS={demo_views}`, i.e. `--views_per_image {demo_views}`" in text
