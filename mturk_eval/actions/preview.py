"""``preview``: render chosen items' rating HITs to HTML files (and optionally serve them on localhost)
so a person can look at exactly what workers will see before paying for it."""
from __future__ import annotations

import functools
import html
import http.server
from pathlib import Path
from typing import Callable

from mturk_eval.tasks import builder as builder
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.io import atomic_write_text
from mturk_eval.platforms import registry


def _system(it: dict) -> tuple[str, str, str]:
    return (str(it.get("eval_set", "")), str(it.get("method", "")), str(it.get("model", "")))


def _round_robin(queues: list[list]) -> list:
    out, i = [], 0
    while any(i < len(q) for q in queues):
        out.extend(q[i] for q in queues if i < len(q))
        i += 1
    return out


def spread(items: list[dict]) -> list[dict]:
    """``items`` reordered so that any first N cover as many systems as they can: round-robin over the
    (eval_set, method, model) groups, each group itself round-robin over its personas. Deterministic:
    groups, and personas within a group, keep the order they first appear in; every item is kept once."""
    groups: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    for it in items:
        groups.setdefault(_system(it), {}).setdefault(str(it.get("persona_id", "")), []).append(it)
    return _round_robin([_round_robin(list(by_persona.values())) for by_persona in groups.values()])


EXTERNAL_SITE_PLACEHOLDER = "http://127.0.0.1:SITE-PORT"


def _external_question(cfg: ExperimentConfig) -> Callable[[int], str] | None:
    """For MTurk with [platform.mturk] question = "external": the ExternalQuestion of preview task ``n``, as
    publish would send it (its settings, site address and frame height); None when the platform sends its
    pages itself. Where publish finds the site only when it starts it (the bundled sandbox, on a port not
    known yet) a placeholder stands in for the address."""
    if cfg.platform.name != "mturk":
        return None
    settings = registry.settings_for(cfg, "mturk")  # validated as publish validates it
    if settings.question != "external":
        return None
    from mturk_eval.platforms.mturk.external import external_question

    url = settings.site_url_given or EXTERNAL_SITE_PLACEHOLDER
    return lambda n: external_question(url, f"PREVIEW-{n:03d}", settings.frame_height)


def preview(cfg: ExperimentConfig, responses_path: str | Path, out_dir: str | Path, *,
            item_ids: tuple[str, ...] = (), count: int = 3, attention: bool = False,
            echo: Callable[[str], None] | None = None) -> list[Path]:
    """Write ``hit-NNN.html`` (the worker's page), ``hit-NNN.xml`` (for MTurk: the HTMLQuestion, or with
    ``question = "external"`` the ExternalQuestion pointing at the rating site) and ``index.html``.

    Without ``item_ids`` the ``count`` HITs hold a spread of the items (:func:`spread`: each
    eval_set/method/model and persona in turn), not just the first ones of the file; ``echo`` is told
    when ``count`` HITs are too few to show every system.

    ``echo`` gets a warning line when responses of the file are empty (publish refuses those)."""
    items = builder.load_responses(responses_path)
    empty = builder.empty_responses(items)
    if empty and echo is not None:
        echo(f"warning: {builder.describe_empty(empty, len(items), responses_path)} (workers would rate a blank"
             " reply; publish refuses them unless given --allow-empty)")
    if item_ids:
        by_id = {it["item_id"]: it for it in items}
        missing = [i for i in item_ids if i not in by_id]
        if missing:
            raise UserError(f"--item: {missing[0]!r} is not an item_id of {responses_path}")
        chosen = [by_id[i] for i in item_ids]
    else:
        if count < 1:
            raise UserError(f"--count: expected an integer >= 1, got {count}")
        chosen = spread(items)[: count * cfg.hit.items_per_hit]
        systems = list(dict.fromkeys(_system(it) for it in items))
        shown = {_system(it) for it in chosen}
        if echo is not None and len(shown) < len(systems):
            per_hit = cfg.hit.items_per_hit
            need = -(-len(systems) // per_hit)
            hits_word = "this HIT shows" if count == 1 else f"these {count} HITs show"
            echo(f"note: {hits_word} {len(shown)} of the {len(systems)} eval_set/method/model"
                 f" groups; --count {need} shows each")
    if attention:
        chosen = chosen + builder.make_attention_checks(chosen, 0.5, cfg.seed, cfg.language, "preview")[:1]
    out = Path(out_dir)
    files: dict[Path, str] = {}
    links = []
    n_per = cfg.hit.items_per_hit
    plat = registry.get_platform(cfg.platform.name)  # its class: its document format and limits
    external = _external_question(cfg)
    # Render everything first: a template error or a question over 64 KB leaves no files behind.
    for n, start in enumerate(range(0, len(chosen), n_per), start=1):
        group = chosen[start:start + n_per]
        page = builder.render_html(group, cfg.language, plat.preview_submit_url, cfg.hit.template_dir)
        if external is not None:  # MTurk gets an ExternalQuestion; the page is what its frame shows
            xml = external(n)
        else:
            xml = plat.task_document(group, cfg, plat.preview_submit_url)  # the platform's limits apply
        files[out / f"hit-{n:03d}.html"] = page
        suffix = ".xml" if external is not None else plat.document_suffix
        if suffix != ".html":
            files[out / f"hit-{n:03d}{suffix}"] = xml
        ids = ", ".join(html.escape(it["item_id"]) for it in group)
        links.append(f'<li><a href="hit-{n:03d}.html">HIT {n}</a> ({ids}; {len(xml.encode())} bytes;'
                     f' <a href="hit-{n:03d}.html?assignmentId=PREVIEW_ANSWERING&amp;turkSubmitTo=about:blank">'
                     f'as after accepting</a>)</li>')
    files[out / "index.html"] = ("<!DOCTYPE html><meta charset=utf-8><title>mturk-eval preview</title>"
                                 f"<h1>{html.escape(cfg.name)}: {len(links)} HITs</h1><ul>{''.join(links)}</ul>\n")
    for path, text in files.items():
        atomic_write_text(path, text)
    return list(files)


def make_server(out_dir: str | Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``out_dir`` on 127.0.0.1 (port 0 picks a free one); not yet serving."""
    handler = functools.partial(_QuietHandler, directory=str(out_dir))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass


def serve(out_dir: str | Path, port: int = 8000, echo=print) -> None:
    """Serve ``out_dir`` on http://127.0.0.1:port until interrupted."""
    try:
        httpd = make_server(out_dir, port)
    except OSError as exc:
        raise UserError(f"--port: cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
    with httpd:
        echo(f"serving {out_dir} at http://127.0.0.1:{httpd.server_address[1]}/index.html (Ctrl-C to stop)")
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
