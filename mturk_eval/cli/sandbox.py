"""``mturk-eval sandbox``: serve the local MTurk sandbox, and run simulated workers against it."""
from __future__ import annotations

import ipaddress
import json

import click

from mturk_eval.errors import UserError

DEFAULT_PORT = 8765
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"



@click.group()
def sandbox() -> None:
    """A local MTurk-compatible server (requester API + worker site) and simulated workers.

    \b
    Point boto3 (or `mturk-eval publish --endpoint-url`) at it:
      boto3.client("mturk", endpoint_url="http://127.0.0.1:8765", region_name="us-east-1",
                   aws_access_key_id="x", aws_secret_access_key="x")
    """


@sandbox.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback also needs --allow-remote.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to bind (0 picks a free one).")
@click.option("--state", "state", type=click.Path(dir_okay=False), default="runs/sandbox/state.sqlite",
              show_default=True, help="SQLite file holding the sandbox's HITs and assignments (kept across restarts).")
@click.option("--allow-remote", is_flag=True, help="Allow binding an address other than loopback.")
@click.option("--throttle-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Fault injection: share of API requests answered with ThrottlingException.")
@click.option("--error-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Fault injection: share of API requests answered with ServiceFault (HTTP 500).")
@click.option("--drop-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Fault injection: share of API requests whose connection is closed before they run.")
@click.option("--drop-after-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Fault injection: share of API requests that run but whose answer is lost (connection closed).")
@click.option("--latency", type=click.FloatRange(0.0), default=0.0, show_default=True,
              help="Fault injection: seconds added to every API request.")
@click.option("--latency-jitter", type=click.FloatRange(0.0), default=0.0, show_default=True,
              help="Fault injection: up to this many random extra seconds per API request.")
@click.option("--fault-seed", type=int, default=0, show_default=True,
              help="Seed of the fault draws (same seed and request order, same faults).")
@click.option("--fault-ops", default="", help="Comma-separated operations that get faults (default: all).")
@click.option("--max-body", type=click.IntRange(1024), default=512 * 1024, show_default=True,
              help="Largest request body accepted, in bytes (larger ones get HTTP 413).")
@click.option("--quiet", is_flag=True, help="Do not log each request.")
def serve(host: str, port: int, state: str, allow_remote: bool, throttle_rate: float, error_rate: float,
          drop_rate: float, drop_after_rate: float, latency: float, latency_jitter: float, fault_seed: int,
          fault_ops: str, max_body: int, quiet: bool) -> None:
    """Serve the requester API and the worker site until interrupted (Ctrl-C)."""
    from mturk_eval.emulators.faults import FaultConfig
    from mturk_eval.emulators.server import serve as run

    if not allow_remote and not _is_loopback(host):
        raise UserError(f"--host: {host} is not a loopback address; add --allow-remote to expose the sandbox")
    faults = FaultConfig(throttle_rate=throttle_rate, error_rate=error_rate, drop_rate=drop_rate,
                         drop_after_rate=drop_after_rate, latency_s=latency, latency_jitter_s=latency_jitter,
                         seed=fault_seed, operations=[o.strip() for o in fault_ops.split(",") if o.strip()])

    def ready(url: str) -> None:
        click.echo(f"Local MTurk sandbox on {url}  (state: {state})")
        click.echo(f"  requester API: boto3.client('mturk', endpoint_url='{url}', region_name='us-east-1',"
                   " aws_access_key_id='x', aws_secret_access_key='x')")
        click.echo(f"  worker site:   {url}/")
        active = {k: v for k, v in faults.to_dict().items() if v and k != "seed"}
        if active:
            click.echo(f"  faults:        {json.dumps(active)} (seed {fault_seed})")

    try:
        run(state, host, port, faults, max_body=max_body, quiet=quiet, ready=ready)
    except OSError as exc:
        raise UserError(f"--host/--port: cannot bind {host}:{port} ({exc.strerror or exc})") from None
    except KeyboardInterrupt:
        click.echo("stopped")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@sandbox.command("simulate")
@click.option("--endpoint", default=DEFAULT_URL, show_default=True, help="The sandbox's URL.")
@click.option("--workers", type=click.IntRange(1), default=5, show_default=True,
              help="Number of simulated workers; they take turns, one HIT each per round, so the work spreads over all of them (each HIT at most once per worker).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Experiment TOML: its local ledger gives the rating model each item's text (persona, utterance,"
                   " reply) and attention checks (without it every item is rated from the neutral quality 3).")
@click.option("--noise", type=click.FloatRange(0.0), default=0.8, show_default=True,
              help="Standard deviation of a careful worker's rating noise (1..5 scale).")
@click.option("--bias-sd", type=click.FloatRange(0.0), default=0.4, show_default=True,
              help="Standard deviation of each worker's constant leniency.")
@click.option("--careless-share", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
              help="Share of workers who answer at random (and so mostly fail attention checks).")
@click.option("--work-time", type=click.FloatRange(0.1), default=45.0, show_default=True,
              help="Median seconds a careful worker spends per HIT (careless ones: --careless-work-time).")
@click.option("--careless-work-time", type=click.FloatRange(0.1), default=8.0, show_default=True,
              help="Median seconds a careless worker spends per HIT.")
@click.option("--quality", "quality_path", type=click.Path(dir_okay=False),
              help="Opt-in: JSON file {method: {aspect: mean 1..5}} of qualities YOU assume (e.g. an effect size"
                   " for a power analysis); replaces the text-based quality for the methods and aspects listed.")
@click.option("--max-hits-per-worker", type=click.IntRange(1), default=None, help="Stop each worker after this many HITs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the workers and their ratings.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def simulate(endpoint: str, workers: int, config_path: str | None, noise: float, bias_sd: float,
             careless_share: float, work_time: float, careless_work_time: float, quality_path: str | None,
             max_hits_per_worker: int | None, seed: int, no_progress: bool) -> None:
    """Simulated workers browse the sandbox's worker site and submit ratings (marked simulated).

    \b
    By default each item's latent quality comes from its own text (needs
    --config), by crude heuristics, never from which system wrote it:
      persona       content words shared with the persona (none: 3)
      relevance     content words shared with the utterance, reply shape
      fluency       repetition, junk characters, very short, no sentence end
      engagingness  length, asks back, talks about itself, not generic
    A worker's score is that quality + their bias + noise, within 1..5.
    Simulated ratings say nothing about how people would rate the systems;
    the report marks them SIMULATED. Details: docs/sandbox.md.
    """
    from mturk_eval.emulators.simulate import RatingModel, ledger_items, simulate as run

    quality = _read_quality(quality_path) if quality_path else None
    model = RatingModel(quality=quality, noise_sd=noise, worker_bias_sd=bias_sd, careless_share=careless_share,
                        work_time_median_s=work_time, careless_work_time_median_s=careless_work_time)
    items_of = None
    ledger = None
    if config_path:
        from mturk_eval.config import load_config
        from mturk_eval.ledger import Ledger, ledger_path

        cfg = load_config(config_path)
        path = ledger_path(cfg, "local")
        if not path.exists():
            raise UserError(f"{path}: no local ledger yet; publish to the sandbox first"
                            " (mturk-eval publish --endpoint-url ...)")
        ledger = Ledger.open(path)
        items_of = ledger_items(ledger)
    try:
        res = run(endpoint, workers, model, seed=seed, items_of=items_of, max_hits_per_worker=max_hits_per_worker,
                  progress=not no_progress)
    finally:
        if ledger is not None and hasattr(ledger, "close"):
            ledger.close()
    click.echo(f"{res.submitted} simulated assignments submitted by {workers} workers"
               f" ({len(res.careless_workers)} careless); {res.skipped} times a worker found a HIT already full,"
               " expired or done by them, and moved on.")
    if res.attention_checks:
        click.echo(f"attention checks: {res.attention_passed}/{res.attention_checks} passed")
    if quality_path:
        click.echo(f"latent qualities: assumed from {quality_path} for the methods and aspects it lists"
                   " (your assumption, not a finding); text-based otherwise")


def _read_quality(path: str) -> dict[str, dict[str, float]]:
    from mturk_eval.io import read_text

    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object {{method: {{aspect: mean}}}}, got {type(data).__name__}")
    for method, aspects in data.items():
        if not isinstance(aspects, dict):
            raise UserError(f"{path}: {method}: expected an object {{aspect: mean}}, got {aspects!r}")
        for aspect, v in aspects.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 5:
                raise UserError(f"{path}: {method}.{aspect}: expected a number from 1 to 5, got {v!r}")
    return data


@sandbox.command("participants")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Experiment TOML: its Prolific emulator ledger names the studies, its rating site store the tasks.")
@click.option("--endpoint", default=DEFAULT_URL, show_default=True, help="The local emulator server's URL.")
@click.option("--participants", "n", type=click.IntRange(1), default=None,
              help="How many participants take each study (default: its places plus the returns and walk-aways).")
@click.option("--return-share", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Share who return the study on Prolific instead of finishing.")
@click.option("--abandon-share", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Share who walk away mid-task (the emulator times them out after maximum_allowed_time).")
@click.option("--careless-share", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
              help="Share who answer at random (and so mostly fail attention checks).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the participants and their ratings.")
def participants(config_path: str, endpoint: str, n: int | None, return_share: float, abandon_share: float,
                 careless_share: float, seed: int) -> None:
    """Simulated Prolific participants take the experiment's studies on the local emulator.

    Each opens the study (PROLIFIC_PID, STUDY_ID, SESSION_ID), rates a task on the rating site
    (which must be running: `mturk-eval serve`), follows the completion redirect and appears as
    AWAITING REVIEW with its code. Only 127.0.0.0/8 is ever visited.
    """
    from mturk_eval.config import load_config
    from mturk_eval.emulators.prolific.participants import check_local, simulate_participants, store_items
    from mturk_eval.emulators.simulate import RatingModel
    from mturk_eval.ledger import Ledger
    from mturk_eval.platforms.prolific.records import Records
    from mturk_eval.platforms.prolific.workflow import ledger_file
    from mturk_eval.site.store import SiteStore, site_store_path

    cfg = load_config(config_path)
    check_local(endpoint)
    path = ledger_file(cfg, emulator=True)
    if not path.exists():
        raise UserError(f"{path}: no Prolific emulator ledger yet; run `mturk-eval publish --platform prolific"
                        " --sandbox` first")
    with Ledger.open(path) as ledger, SiteStore.open(site_store_path(cfg.run_dir)) as store:
        studies = [(r.study_id, r.places) for r in Records(ledger.conn).studies() if r.study_id]
        model = RatingModel(careless_share=careless_share)
        for study_id, places in studies:
            count = n or places + round(places * (return_share + abandon_share) / max(0.05, 1 - return_share
                                                                                       - abandon_share))
            res = simulate_participants(endpoint, study_id, count, seed=seed, model=model, return_share=return_share,
                                        abandon_share=abandon_share, items_of=store_items(store))
            click.echo(f"study {study_id}: {len(res.completed)} completed, {len(res.returned)} returned,"
                       f" {len(res.abandoned)} walked away, {len(res.refused)} found no place")
