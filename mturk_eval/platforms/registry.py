"""The platform registry: a platform's name (``[platform] name``, ``--platform``) -> its implementation.

A plain map of names to import paths, so that adding a platform is one line here and one package beside
``mturk/``; a platform's module is imported only when it is used. Each platform class carries
``Settings`` (its settings dataclass, validated in ``__post_init__``; read from the config's
``[platform.<name>]`` table) and ``from_settings(settings, concurrency=...)``.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from mturk_eval.errors import UserError

if TYPE_CHECKING:
    from mturk_eval.config import ExperimentConfig
    from mturk_eval.platforms.crowd_platform import CrowdPlatform

PLATFORMS: dict[str, str] = {
    "mturk": "mturk_eval.platforms.mturk.mturk_platform:MTurkPlatform",
    "links": "mturk_eval.platforms.links.links_platform:LinksPlatform",
    "prolific": "mturk_eval.platforms.prolific.prolific_platform:ProlificPlatform",
}
DEFAULT = "mturk"
OPTIONAL = ("target", "sandbox_dir", "start_sandbox")


def check_name(name: str, where: str = "platform.name") -> str:
    """``name`` if it is a registered platform, else a one-line UserError listing the known ones."""
    if name not in PLATFORMS:
        raise UserError(f"{where}: unknown platform {name!r} (known: {', '.join(sorted(PLATFORMS))})")
    return name


def get_platform(name: str, where: str = "platform.name") -> type["CrowdPlatform"]:
    """The platform class registered as ``name``."""
    module, attr = PLATFORMS[check_name(name, where)].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise UserError(f"{where}: platform {name!r} is not part of this installation ({module} is"
                            " missing)") from None
        raise
    return getattr(mod, attr)


def settings_for(cfg: "ExperimentConfig", name: str, **overrides: Any) -> Any:
    """The platform's settings: its ``[platform.<name>]`` table from the config, then ``overrides`` (CLI
    options; None means "not given"), built into the platform's own settings dataclass."""
    from mturk_eval.config import build_section

    cls = get_platform(name)
    fields = {f.name for f in dataclasses.fields(cls.Settings)}
    # target and the bundled sandbox are offered to every platform; each takes those it has settings for.
    given = {k: v for k, v in overrides.items() if v is not None and (k in fields or k not in OPTIONAL)}
    # Platforms served by the rating site keep its store in runs/<exp>/ and link to [site] public_url.
    # config_path: what the background rating site of --sandbox is started with (`mturk-eval serve --config`).
    # They go in with the table, so that the settings check itself (__post_init__) sees them.
    context = {key: value for key, value in (("run_dir", str(cfg.run_dir)), ("site_public_url", cfg.site.public_url),
                                             ("config_path", cfg.source_path))
               if key in fields and key not in given and value is not None}
    table = {**cfg.platform.settings.get(name, {}), **context}
    settings = build_section(cls.Settings, table, f"platform.{name}", cfg.source_path or "<config>")
    unknown = [k for k in given if k not in fields]
    if unknown:
        raise UserError(f"--{unknown[0].replace('_', '-')}: not an option of platform {name!r}")
    return dataclasses.replace(settings, **given) if given else settings


def make_platform(cfg: "ExperimentConfig", name: str | None = None, *, concurrency: int = 4,
                  **overrides: Any) -> "CrowdPlatform":
    """The platform ``name`` (default: the config's ``[platform] name``) built from its settings. Nothing
    is contacted yet. Tests replace this one function (tests/conftest.py ``use_platform``)."""
    name = name or cfg.platform.name
    cls = get_platform(name, "--platform" if name != cfg.platform.name else "platform.name")
    return cls.from_settings(settings_for(cfg, name, **overrides), concurrency=concurrency)
