"""The WSGI entry point for gunicorn: ``gunicorn mturk_eval.site.wsgi:app`` with
``MTURK_EVAL_SITE_SETTINGS`` naming the settings file ``mturk-eval serve`` wrote
(``runs/<exp>/site.settings.json``). Each worker opens the store itself."""
from __future__ import annotations

import os

from mturk_eval.site.app import create_app
from mturk_eval.site.serving import read_settings

app = create_app(read_settings(os.environ["MTURK_EVAL_SITE_SETTINGS"]))
