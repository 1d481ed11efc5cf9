"""``init``: write a commented ``mturk-eval.toml`` into a directory, from one of the shipped experiments
(``demo.toml``, ``paper_en.toml``, ``paper_ja.toml``), with its data paths resolved for that directory, so
that every verb run there (or below) finds it without ``--config``.

The experiments are package data (``mturk_eval/experiments/``, read through :mod:`importlib.resources`;
the source tree's ``experiments/`` is a link to that folder), so init works from an installed wheel too.
Their relative data paths are relative to that folder (the demo's: the package's own ``data/sample``)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mturk_eval.config import CONFIG_ENV, CONFIG_FILE, default_data_dir, parse_config
from mturk_eval.errors import UserError
from mturk_eval.io import atomic_write_text

EXPERIMENTS = "experiments"  # the folder of shipped experiments inside the mturk_eval package
TEMPLATES = ("demo", "paper_en", "paper_ja")
_PATH_LINE = re.compile(r'^(\s*(?:path|topics_path|template_dir)\s*=\s*)"([^"]*)"', re.MULTILINE)

HEADER = """\
# mturk-eval.toml: this directory's experiment, written by `mturk-eval init --from {template}`.
# Every verb run here or in a folder below finds it (else: --config FILE or ${env}).
#
# The three commands:
#   mturk-eval generate           # datasets, prompt-tuned and fine-tuned systems, responses
#   mturk-eval publish --sandbox  # rating tasks on the bundled local MTurk-compatible server
#   mturk-eval report             # collects what is new, then Tables 2/3 (7/8), agreement, tests, plots
#
# Amazon Mechanical Turk closed on 2026-09-30. `--sandbox` is the toolkit's own local MTurk-compatible
# server (started in the background; `mturk-eval sandbox simulate` sends simulated raters to it). Real
# raters come through the toolkit's rating site: invite links or Prolific ([platform] name below).
#
# Relative paths below are relative to this file's directory; outputs go to runs_dir.
[platform]
name = "mturk"          # mturk | links | prolific

"""


@dataclass
class InitResult:
    path: Path
    template: str
    notes: list[str]


def _resolve(text: str, src_dir: Path, dest_dir: Path) -> str:
    """Relative data paths of the template (relative to ``src_dir``) rewritten relative to ``dest_dir``."""

    def sub(m: re.Match) -> str:
        value = m.group(2)
        if value.startswith(("$", "/", "~")):
            return m.group(0)
        target = (src_dir / value).resolve()
        return f'{m.group(1)}"{os.path.relpath(target, dest_dir)}"'

    return _PATH_LINE.sub(sub, text)


def init(directory: str | Path = ".", template: str = "demo") -> InitResult:
    """Write ``<directory>/mturk-eval.toml`` from ``template``; refuse to overwrite one."""
    if template not in TEMPLATES:
        raise UserError(f"--from: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    with resources.as_file(experiment_file(template)) as src:
        if not src.is_file():
            raise UserError(f"{src}: not found: this installation of mturk_eval lacks its package data"
                            " (reinstall it: `make install` or `pip install mturk-eval`)")
        return _init(Path(directory), template, src)


def experiment_file(template: str):
    """The shipped experiment ``template`` (an importlib.resources Traversable in the package)."""
    return resources.files("mturk_eval").joinpath(EXPERIMENTS, f"{template}.toml")


def _init(dest_dir: Path, template: str, src: Path) -> InitResult:
    if dest_dir.exists() and not dest_dir.is_dir():
        raise UserError(f"{dest_dir}: not a folder")
    dest = dest_dir / CONFIG_FILE
    if dest.exists():
        raise UserError(f"{dest}: already exists; init never overwrites a config (remove it, or give another"
                        " folder)")
    body = src.read_text(encoding="utf-8")
    dest_dir_abs = dest_dir.resolve()
    body = _resolve(body, src.parent, dest_dir_abs)
    body = re.sub(r"^\[experiment\]\n", f'[experiment]\nruns_dir = "{dest_dir_abs / "runs"}"   # outputs\n',
                  body, count=1, flags=re.MULTILINE)
    text = HEADER.format(template=template, env=CONFIG_ENV) + body
    notes = []
    if "${MTURK_EVAL_DATA}" in text and default_data_dir(dest_dir_abs) is None:
        notes.append(f"{dest}: the data paths use ${{MTURK_EVAL_DATA}}, which is not set and no ../shared/data"
                     " is above this folder: set it before `mturk-eval generate`")
    else:
        parse_config(text, str(dest), base_dir=dest_dir_abs)  # it must load where it is written
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    atomic_write_text(tmp, text)
    try:
        os.link(tmp, dest)  # whole file or nothing, and never over one made meanwhile
    except FileExistsError:
        raise UserError(f"{dest}: already exists; init never overwrites a config") from None
    finally:
        tmp.unlink(missing_ok=True)
    return InitResult(dest, template, notes)
