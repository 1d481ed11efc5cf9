"""``mturk-eval sandbox``: serve the local MTurk-compatible sandbox, stop an experiment's bundled one, and run
simulated workers against it. Amazon's own sandbox closed with MTurk on 2026-09-30; ``publish --sandbox``
starts the bundled server in the background (mturk_eval.emulators.background)."""
from __future__ import annotations

import ipaddress
import json

import click

from mturk_eval.errors import UserError

DEFAULT_PORT = 8765



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
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="Write the server's URL to this file once it is serving (for scripts and the background sandbox).")
def serve(host: str, port: int, state: str, allow_remote: bool, throttle_rate: float, error_rate: float,
          drop_rate: float, drop_after_rate: float, latency: float, latency_jitter: float, fault_seed: int,
          fault_ops: str, max_body: int, quiet: bool, ready_file: str | None) -> None:
    """Serve the requester API and the worker site until interrupted (Ctrl-C or SIGTERM)."""
    import signal
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
        click.echo(f"  Prolific API:  {url}/api/v1/ (publish --platform prolific --sandbox --api-url {url})")
        active = {k: v for k, v in faults.to_dict().items() if v and k != "seed"}
        if active:
            click.echo(f"  faults:        {json.dumps(active)} (seed {fault_seed})")
        if ready_file:
            from mturk_eval.io import atomic_write_text

            atomic_write_text(ready_file, url + "\n")

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)  # `sandbox stop`: close the state cleanly
    try:
        run(state, host, port, faults, max_body=max_body, quiet=quiet, ready=ready)
    except OSError as exc:
        raise UserError(f"--host/--port: cannot bind {host}:{port} ({exc.strerror or exc})") from None
    except KeyboardInterrupt:
        click.echo("stopped")


@sandbox.group("workers")
def workers() -> None:
    """Worker profiles of the local MTurk: locale, history, Adult, Masters (what system qualifications see).

    \b
    A worker the sandbox has not been told about is a US worker with no history
    (approval rate 100%, 0 HITs approved). Work done on the sandbox adds to the
    history given here. Examples:
      mturk-eval sandbox workers add AUKRATER1 --country GB --approved 1200 --rejected 12
      mturk-eval sandbox workers add AJPRATER1 --country JP --masters --endpoint http://127.0.0.1:8765
      mturk-eval sandbox workers add AUSRATER1 --approved 600 --state runs/sandbox/state.sqlite
      mturk-eval sandbox workers list
    Without --endpoint or --state: the experiment's bundled sandbox (the one
    `publish --sandbox` starts), its config found as for every verb.
    """


def _workers_target(endpoint: str | None, config_path: str | None, state: str | None, *,
                    create: bool) -> tuple[str | None, str | None]:
    """(url, None) for a running sandbox (``--endpoint``), else (None, state file): ``--state``, or the
    bundled sandbox's of the experiment (``--config``, else the discovered config)."""
    if endpoint:
        return endpoint.rstrip("/"), None
    if state:
        from pathlib import Path

        if not create and not Path(state).exists():
            raise UserError(f"--state: {state}: no sandbox state here")
        return None, state
    from mturk_eval.config import find_config, load_config
    from mturk_eval.emulators.background import state_path

    path = state_path(load_config(find_config(config_path)).run_dir)
    if not create and not path.exists():
        raise UserError(f"{path}: the experiment has no bundled sandbox yet; run `mturk-eval publish --sandbox`"
                        " first (or give --state FILE or --endpoint URL)")
    return None, str(path)


_STATE_OPTION = click.option("--state", type=click.Path(dir_okay=False), default=None,
                             help="A sandbox state file (`sandbox serve --state`) instead of the experiment's bundled"
                                  " sandbox.")
_ENDPOINT_OPTION = click.option("--endpoint", default=None,
                                help="A running sandbox's URL (instead of a state file).")
_CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                              help="Experiment TOML whose bundled sandbox (runs/<exp>/sandbox/, the one `publish"
                                   " --sandbox` starts) gets the profile (default: $MTURK_EVAL_CONFIG, else"
                                   " mturk-eval.toml here or in a parent).")


@workers.command("add")
@click.argument("worker_id", required=False)
@click.option("--country", default="US", show_default=True, help="ISO 3166 country code (Worker_Locale).")
@click.option("--subdivision", default=None, help="ISO 3166-2 subdivision, e.g. CA for California.")
@click.option("--approved", type=click.IntRange(0), default=0, show_default=True,
              help="HITs approved elsewhere (NumberHITsApproved, PercentAssignmentsApproved).")
@click.option("--rejected", type=click.IntRange(0), default=0, show_default=True, help="Assignments rejected elsewhere.")
@click.option("--submitted", type=click.IntRange(0), default=None,
              help="Assignments submitted elsewhere (default: approved + rejected).")
@click.option("--abandoned", type=click.IntRange(0), default=0, show_default=True, help="Assignments abandoned elsewhere.")
@click.option("--adult/--no-adult", default=False, show_default=True, help="Holds the Adult qualification.")
@click.option("--masters/--no-masters", default=False, show_default=True, help="Holds Masters (sandbox and production ids).")
@_STATE_OPTION
@_ENDPOINT_OPTION
@_CONFIG_OPTION
def workers_add(worker_id: str, country: str, subdivision: str | None, approved: int, rejected: int,
                submitted: int | None, abandoned: int, adult: bool, masters: bool, state: str,
                endpoint: str | None, config_path: str | None) -> None:
    """Set (or replace) WORKER_ID's profile."""
    url, state = _workers_target(endpoint, config_path, state, create=True)
    if not worker_id:
        raise UserError("WORKER_ID: give the worker's id (A followed by capital letters and digits)")
    fields = dict(country=country.upper(), subdivision=subdivision.upper() if subdivision else None,
                  approved=approved, rejected=rejected, submitted=submitted, abandoned=abandoned, adult=adult,
                  masters=masters)
    if url:
        import requests

        try:
            r = requests.post(url + "/_sandbox/workers", json={"worker_id": worker_id, **fields}, timeout=30)
        except requests.RequestException as exc:
            raise UserError(f"--endpoint: cannot reach {url} ({exc})") from None
        if r.status_code != 200:
            message = r.json().get("message", r.text) if r.headers.get("Content-Type", "").endswith("json") else r.text
            raise UserError(message)
        prof = r.json()["worker"]
    else:
        from mturk_eval.emulators.mturk.models import SandboxError, Store

        store = Store(state)
        try:
            with store.transaction() as now:
                prof = store.set_worker_profile(worker_id, now, **fields)
        except SandboxError as exc:
            raise UserError(exc.message) from None
        finally:
            store.close()
    click.echo(_profile_line(prof))


@workers.command("list")
@_STATE_OPTION
@_ENDPOINT_OPTION
@_CONFIG_OPTION
def workers_list(state: str, endpoint: str | None, config_path: str | None) -> None:
    """The workers with a profile, and their history (given + done on the sandbox)."""
    url, state = _workers_target(endpoint, config_path, state, create=False)
    if url:
        import requests

        try:
            profiles = requests.get(url + "/_sandbox/workers", timeout=30).json()["workers"]
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise UserError(f"--endpoint: cannot read worker profiles from {url} ({exc})") from None
    else:
        from mturk_eval.emulators.mturk.models import Store

        store = Store(state)
        try:
            with store.transaction():
                profiles = store.list_worker_profiles()
        finally:
            store.close()
    if not profiles:
        click.echo("no worker profiles (every worker is a US worker with no history)")
    for prof in profiles:
        click.echo(_profile_line(prof))


def _profile_line(p: dict) -> str:
    loc = p["country"] + (f"-{p['subdivision']}" if p.get("subdivision") else "")
    extras = "".join(f", {k}" for k in ("adult", "masters") if p.get(k))
    return (f"{p['worker_id']}: locale {loc}, {p['approved']} approved, {p['rejected']} rejected of"
            f" {p['submitted']} submitted{extras}")


def _profile_for(cfg) -> dict:
    """A simulated worker's profile meeting the experiment's system qualification requirements."""
    from mturk_eval.emulators.mturk.qualifications import profile_meeting
    from mturk_eval.platforms.mturk.quals import build_requirements

    return profile_meeting(build_requirements(cfg.hit.qualifications, "local"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@sandbox.command("stop")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Experiment TOML (default: $MTURK_EVAL_CONFIG, else mturk-eval.toml here or in a parent).")
def stop(config_path: str | None) -> None:
    """End the experiment's bundled sandbox and background rating site started by `publish --sandbox`
    (their state and store are kept)."""
    from mturk_eval.config import find_config, load_config
    from mturk_eval.emulators.background import record_path, stop_sandbox, stop_site

    cfg = load_config(find_config(config_path))
    rec = stop_sandbox(cfg.run_dir)
    if rec is None:
        click.echo(f"no bundled sandbox recorded for experiment {cfg.name} ({record_path(cfg.run_dir)})")
    else:
        click.echo(f"stopped the bundled sandbox on {rec.url} (pid {rec.pid}); its state stays in {rec.state}")
    site = stop_site(cfg.run_dir)
    if site is not None:
        click.echo(f"stopped the rating site on {site.url} (pid {site.pid}); its store stays in {site.state}")


@sandbox.command("simulate")
@click.option("--endpoint", default=None,
              help="The sandbox's URL (default: the experiment's bundled sandbox started by `publish --sandbox`).")
@click.option("--workers", type=click.IntRange(1), default=5, show_default=True,
              help="Number of simulated workers; they take turns, one HIT each per round, so the work spreads over all of them (each HIT at most once per worker).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Experiment TOML (default: $MTURK_EVAL_CONFIG, else mturk-eval.toml here or in a parent): its"
                   " ledger says which tasks are the experiment's (only those are rated) and gives the rating"
                   " model each item's text and attention checks.")
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
@click.option("--platform", "platform_name", default=None, metavar="NAME",
              help="mturk (the worker site; ExternalQuestions lead to the rating site), links (simulated raters"
                   " take invite links on the rating site: the background one of publish --sandbox, else one"
                   " started here, or the one at --endpoint) or prolific (simulated participants on the"
                   " Prolific emulator, as `sandbox participants`; --workers: how many per study, default its"
                   " places); default the config's [platform].")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def simulate(endpoint: str, workers: int, config_path: str | None, noise: float, bias_sd: float,
             careless_share: float, work_time: float, careless_work_time: float, quality_path: str | None,
             max_hits_per_worker: int | None, seed: int, platform_name: str | None, no_progress: bool) -> None:
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
    from mturk_eval.actions.common import open_ledger
    from mturk_eval.config import find_config, load_config
    from mturk_eval.ledger import ledger_path

    cfg = load_config(find_config(config_path))
    name = platform_name or cfg.platform.name
    if name == "links":
        _simulate_links(cfg, endpoint, workers, model, seed, max_hits_per_worker, not no_progress)
        return
    if name == "prolific":
        given = click.get_current_context().get_parameter_source("workers") != click.core.ParameterSource.DEFAULT
        _simulate_prolific(cfg, endpoint, workers if given else None, 0.0, 0.0, careless_share, seed)
        return
    from mturk_eval.emulators.background import find_site

    find_site(cfg.run_dir, cfg.source_path, click.echo)  # ExternalQuestions: the site must be serving
    if endpoint is None:
        from mturk_eval.emulators.background import ensure_sandbox

        endpoint, target = ensure_sandbox(cfg.run_dir, click.echo, start=False).url, "sandbox"
    else:
        target = "local"
    if not ledger_path(cfg, target).exists():
        raise UserError(f"{ledger_path(cfg, target)}: nothing published there yet; run `mturk-eval publish"
                        f" {'--sandbox' if target == 'sandbox' else '--endpoint-url ' + endpoint}` first")
    with open_ledger(cfg, target, create=False) as ledger:
        own = {h.task_id for h in ledger.tasks() if h.task_id}
        res = run(endpoint, workers, model, seed=seed, items_of=ledger_items(ledger), task_ids=own,
                  max_hits_per_worker=max_hits_per_worker, progress=not no_progress, profile=_profile_for(cfg))
    click.echo(f"{res.submitted} simulated assignments submitted by {workers} workers"
               f" ({len(res.careless_workers)} careless); {res.skipped} times a worker found a HIT already full,"
               " expired or done by them, and moved on.")
    if res.attention_checks:
        click.echo(f"attention checks: {res.attention_passed}/{res.attention_checks} passed")
    if res.not_ours:
        click.echo(f"left alone: {res.not_ours} open HITs that are not experiment {cfg.name}'s")
    for line in res.refused:
        click.echo(f"refused: {line}")
    if quality_path:
        click.echo(f"latent qualities: assumed from {quality_path} for the methods and aspects it lists"
                   " (your assumption, not a finding); text-based otherwise")


def _simulate_links(cfg, endpoint: str | None, workers: int, model, seed: int, max_tasks: int | None,
                    progress: bool) -> None:
    """Simulated raters through invite links of their own (revoked afterwards, so no person can use them)."""
    from mturk_eval.emulators.simulate import loopback_url, simulate_links, site_items
    from mturk_eval.ledger import ledger_path
    from mturk_eval.site.serving import settings_from_config, start_site
    from mturk_eval.site.store import SiteStore, site_store_path

    if endpoint is not None:
        loopback_url(endpoint)
    if not ledger_path(cfg, "links").exists() or not site_store_path(cfg.run_dir).exists():
        raise UserError(f"{ledger_path(cfg, 'links')}: nothing published there yet; run `mturk-eval publish"
                        " --platform links` first")
    site = None
    if endpoint is None:  # the background site of publish --sandbox, if it started one
        from mturk_eval.emulators.background import find_site

        rec = find_site(cfg.run_dir, cfg.source_path, click.echo)
        endpoint = rec.url if rec else None
    with SiteStore.open(site_store_path(cfg.run_dir), create=False) as store:
        invites = store.create_invites(workers)
        try:
            if endpoint is None:
                site = start_site(settings_from_config(cfg))
                endpoint = site.url
            res = simulate_links(endpoint, invites, model, seed=seed, items_of=site_items(store),
                                 max_tasks_per_rater=max_tasks, progress=progress)
        finally:
            if site is not None:
                site.stop()
            for inv in invites:
                store.revoke_invite(inv.token)
    click.echo(f"{res.submitted} simulated tasks submitted on the rating site by {workers} raters"
               f" ({len(res.careless_workers)} careless) through invite links of their own (now revoked)")
    if res.attention_checks:
        click.echo(f"attention checks: {res.attention_passed}/{res.attention_checks} passed")


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
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Experiment TOML (default: found as for every verb): its Prolific emulator ledger names the"
                   " studies, its rating site store the tasks.")
@click.option("--endpoint", default=None,
              help="The local emulator server's URL (default: the experiment's bundled sandbox).")
@click.option("--participants", "n", type=click.IntRange(1), default=None,
              help="How many participants take each study (default: its places plus the returns and walk-aways).")
@click.option("--return-share", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Share who return the study on Prolific instead of finishing.")
@click.option("--abandon-share", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Share who walk away mid-task (the emulator times them out after maximum_allowed_time).")
@click.option("--careless-share", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
              help="Share who answer at random (and so mostly fail attention checks).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the participants and their ratings.")
@click.option("--set-status", "set_status", multiple=True, metavar="STATUS=N",
              help="Afterwards put N submissions of each study into STATUS (emulator only, repeatable): APPROVED,"
                   " PARTIALLY APPROVED, REJECTED from AWAITING REVIEW ones; RESERVED, RETURNED, TIMED-OUT,"
                   " SCREENED OUT from walk-aways (--abandon-share).")
def participants(config_path: str, endpoint: str, n: int | None, return_share: float, abandon_share: float,
                 careless_share: float, seed: int, set_status: tuple[str, ...]) -> None:
    """Simulated Prolific participants take the experiment's studies on the local emulator.

    Each opens the study (PROLIFIC_PID, STUDY_ID, SESSION_ID), rates a task on the rating site (the one
    `publish --platform prolific --sandbox` started in the background, restarted if it stopped; or your
    own `mturk-eval serve`), follows the completion redirect and appears as AWAITING REVIEW with its code.
    Only 127.0.0.0/8 is ever visited.
    """
    from mturk_eval.config import find_config, load_config

    wanted = _parse_set_status(set_status)
    _simulate_prolific(load_config(find_config(config_path)), endpoint, n, return_share, abandon_share,
                       careless_share, seed, wanted)


def _parse_set_status(values: tuple[str, ...]) -> dict[str, int]:
    from mturk_eval.platforms.prolific import contract

    out: dict[str, int] = {}
    for v in values:
        status, _, count = v.rpartition("=")
        status = status.strip().upper().replace("_", " ")
        status = "TIMED-OUT" if status == "TIMED OUT" else status
        if status not in contract.SUBMISSION_STATUSES or status in ("ACTIVE", "AWAITING REVIEW") \
                or not count.isdigit():
            raise UserError(f"--set-status: expected STATUS=N with STATUS one of RESERVED, APPROVED, PARTIALLY"
                            f" APPROVED, REJECTED, RETURNED, TIMED-OUT, SCREENED OUT, got {v!r}")
        out[status] = out.get(status, 0) + int(count)
    return out


def _simulate_prolific(cfg, endpoint: str | None, n: int | None, return_share: float, abandon_share: float,
                       careless_share: float, seed: int, wanted: dict[str, int] | None = None) -> None:
    """Simulated participants on the Prolific emulator (``endpoint``, default the bundled one) through the
    experiment's rating site (the background one of --sandbox, found or restarted, when there is one)."""
    from mturk_eval.emulators.background import find_site
    from mturk_eval.emulators.prolific.participants import check_local, set_statuses, simulate_participants, store_items
    from mturk_eval.emulators.simulate import RatingModel
    from mturk_eval.ledger import Ledger
    from mturk_eval.platforms.prolific.records import Records
    from mturk_eval.platforms.prolific.workflow import ledger_file
    from mturk_eval.site.store import SiteStore, site_store_path

    find_site(cfg.run_dir, cfg.source_path, click.echo)  # the participants' pages must be served
    if endpoint is None:
        from mturk_eval.emulators.background import ensure_sandbox

        endpoint = ensure_sandbox(cfg.run_dir, click.echo, start=False).url
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
            if wanted:
                done = set_statuses(endpoint, study_id, wanted)
                click.echo(f"study {study_id}: set (emulator only) "
                           + ", ".join(f"{k} {len(v)}" for k, v in done.items()))
