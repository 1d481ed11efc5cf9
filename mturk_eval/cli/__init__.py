"""The ``mturk-eval`` command: a click group whose verbs live one per module in this package.

Each verb module is thin: it parses options and calls a library function (amti / sqlite-utils style).
Modules are imported lazily so ``mturk-eval --help`` stays fast and torch is only loaded by the verbs
that train or generate.
"""
from __future__ import annotations

import importlib

import click

from mturk_eval import __version__

# verb -> (module, attribute, one-line help shown by `mturk-eval --help`)
VERBS: dict[str, tuple[str, str, str]] = {
    "init": ("mturk_eval.cli.init", "init", "Write a commented mturk-eval.toml for a directory (from demo, paper_en, paper_ja)."),
    "data": ("mturk_eval.cli.data", "data", "Build the persona and general datasets of an experiment."),
    "generate": ("mturk_eval.cli.generate", "generate", "Train prompt-tuned and fine-tuned systems and sample responses."),
    "distinct": ("mturk_eval.cli.generate", "distinct", "Automatic evaluation: distinct-1/2 of a responses file (Tables 1/6)."),
    "preview": ("mturk_eval.cli.preview", "preview", "Render rating tasks to HTML files (or serve them) to look at before paying."),
    "publish": ("mturk_eval.cli.publish", "publish", "Publish rating tasks (MTurk-compatible sandbox by default; links, Prolific), recorded in the ledger."),
    "status": ("mturk_eval.cli.status", "status", "Tasks and submissions by state, cost so far, time left."),
    "collect": ("mturk_eval.cli.collect", "collect", "Fetch submissions, validate and store their answers."),
    "review": ("mturk_eval.cli.review", "review", "Approve, reject, block and bonus (dry run by default)."),
    "expire": ("mturk_eval.cli.expire", "expire", "Expire or delete the batch's tasks (a Prolific study: pause or stop)."),
    "report": ("mturk_eval.cli.report", "report", "Tables 2/3/7/8, agreement, tests, workers and plots."),
    "serve": ("mturk_eval.cli.serve", "serve", "Run the rating site (invite links, Prolific, MTurk ExternalQuestion)."),
    "mapping": ("mturk_eval.cli.mapping", "mapping", "Suggest a --mapping for another template's MTurk batch file."),
    "plan": ("mturk_eval.cli.plan", "plan", "Power, sample sizes and cost of a rating study before paying for it."),
    "sandbox": ("mturk_eval.cli.sandbox", "sandbox", "A local MTurk-compatible server, worker site and simulated workers."),
    "invites": ("mturk_eval.cli.invites", "invites", "List the invite links of an experiment, or revoke one."),
    "participants": ("mturk_eval.cli.participants", "participants", "Export or delete what is held about one participant (access and deletion requests)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module, attr, _ = VERBS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Use the short help from VERBS so `--help` need not import every verb (and torch).
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in VERBS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mturk-eval")
def main() -> None:
    """mturk-eval: a persona dialogue study from prompt-tuning to published human-evaluation tables.

    \b
    Typical run (in a directory with a mturk-eval.toml; `mturk-eval init` writes one):
      mturk-eval generate           # datasets, prompt-tuned and fine-tuned systems, responses
      mturk-eval publish --sandbox  # rating tasks on the bundled local sandbox, 5 raters per item
      mturk-eval report             # collects what is new, then Tables 2/3 (7/8), tests, plots

    MTurk closed for good on 2026-09-30: real raters come through the toolkit's rating site, from
    Prolific (--platform prolific), invite links (--platform links) or an MTurk-style ExternalQuestion.
    """


def _find_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    from mturk_eval.config import find_config

    return str(find_config(value))


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    callback=_find_config,
    help="Experiment TOML file (default: $MTURK_EVAL_CONFIG, else mturk-eval.toml here or in the nearest"
         " parent directory; `mturk-eval init` writes one).",
)
