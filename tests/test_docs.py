"""The README and the pages under docs/ name only options that exist: every ``--option`` a
page gives a command is in that command's ``--help`` (or is one of its accepted old
spellings), every page the README links to exists."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from sentinel2_l1c.run.cli import Parser
from tests.helpers import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

MODULES = (
    "intake_cdse_s3_year|intake_cdse_s3|convert_safe_to_cog|convert_safe_to_zarr|zip_zarr|"
    "index_safe|publish_s3|stage|benchmark_patch_load|throughput|report|file_size_histogram|"
    r"demo|lab\.synthetic|lab\.serve"
)
#: A command: ``sentinel2_l1c.<module>`` anywhere, a bare module name where a code span or a
#: code block line starts, a benchmark script, or another tool (whose options are not ours).
COMMAND = re.compile(
    rf"sentinel2_l1c\.(?P<module>{MODULES})\b(?![./\w])"
    rf"|(?:^|`)\s*(?P<bare>{MODULES})\b(?![./\w])"
    r"|(?:benchmarks/)?(?P<script>\w+\.py)\b"
    r"|(?P<other>\b(?:s3cmd|pip|make|git|unzip|zip|sbatch|SBATCH|pytest|gdalinfo|bash)\b)"
)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


@cache
def options_of(command: str) -> frozenset[str]:
    """Every option a command or benchmark script takes, with its accepted old spellings."""
    if command.endswith(".py"):
        done = subprocess.run(
            [sys.executable, str(REPO / command), "--help"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return frozenset(OPTION.findall(done.stdout))
    parser = importlib.import_module(f"sentinel2_l1c.{command}").build_parser()
    return frozenset(parser._option_string_actions)  # noqa: SLF001 - argparse has no API


def accepts(command: str, option: str) -> bool:
    if option in options_of(command):
        return True
    if command.endswith(".py"):
        return False
    parser = importlib.import_module(f"sentinel2_l1c.{command}").build_parser()
    return isinstance(parser, Parser) and parser.spelling(option) in options_of(command)


def mentions(page: Path) -> list[tuple[int, str | None, str]]:
    """(line, command, option) of every option on the page: an option belongs to the last
    command before it on its line, or in a code block to the block's last command; None where
    no command of this tool is named (then any command may have it), and options given to
    another tool (pip, s3cmd, make …) are left out."""
    found: list[tuple[int, str | None, str]] = []
    in_code, block_command = False, None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_code, block_command = not in_code, None
            continue
        current = block_command if in_code else None
        for match in re.finditer(f"{COMMAND.pattern}|(?P<option>{OPTION.pattern})", line):
            if match.group("option"):
                if current != "other":
                    found.append((number, current, match.group("option")))
                continue
            script = match.group("script")
            if script and (REPO / "benchmarks" / script).is_file():
                current = f"benchmarks/{script}"
            elif not script:
                current = match.group("module") or match.group("bare") or "other"
        if in_code:
            block_command = current
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_option_a_page_names_exists(page: Path) -> None:
    wrong = []
    for number, command, option in mentions(page):
        if command is None:
            if not any(accepts(name, option) for name in COMMANDS):
                wrong.append(f"{page.name}:{number}: {option} is no command's option")
        elif not accepts(command, option):
            wrong.append(f"{page.name}:{number}: {command} has no {option}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_is_short_and_its_links_lead_somewhere() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 20_000
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
