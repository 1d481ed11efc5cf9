"""``mturk-eval serve``: the rating site (invite links, Prolific, MTurk ExternalQuestion)."""
from __future__ import annotations

import click

from mturk_eval.cli import config_option
from mturk_eval.site.servers import SERVER, SERVERS, THREADS, WORKERS


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback is reachable from the network.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind (0 picks a free one).")
@click.option("--public-url", default=None, metavar="URL",
              help="The address raters use (behind an HTTPS reverse proxy: its https:// URL); invite links"
                   " and ExternalQuestions are made with it. Default [site] public_url, else http://HOST:PORT.")
@click.option("--production", is_flag=True, help="Serve with a production server (for a real study) instead of"
              " Flask's development server.")
@click.option("--server", type=click.Choice(SERVERS), default=None, show_default=SERVER,
              help="The production server (with --production).")
@click.option("--workers", default=WORKERS, show_default=True, type=int, help="Worker processes of the production server.")
@click.option("--threads", default=None, type=int, show_default=", ".join(f"{n} for {s}" for s, n in THREADS.items()),
              help="Threads per worker process of the production server.")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="Write the site's URL to this file once it serves (scripts; the background site of --sandbox).")
def serve(config_path, host, port, public_url, production, server, workers, threads, ready_file):
    """Run the rating site: raters arrive by invite link, from Prolific or by MTurk ExternalQuestion.

    Prints the site's URL and the requester token (for /requester/progress and /requester/export.csv).
    The site stores answers in runs/<experiment>/site.sqlite; `collect` brings them into the ledger.
    With --sandbox, `publish` starts this site by itself in the background (on 127.0.0.1 and a free port;
    `mturk-eval sandbox stop` ends it); run `serve` yourself for a real study.
    """
    from mturk_eval.actions.serve import serve as run
    from mturk_eval.config import load_config

    run(load_config(config_path), host=host, port=port, public_url=public_url, production=production,
        server=server, workers=workers, threads=threads, echo=click.echo,
        ready_file=ready_file)
