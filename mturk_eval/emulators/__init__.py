"""Local emulators of the crowd platforms (one server process for every emulated service, see
:mod:`mturk_eval.emulators.server`), fault injection and simulated raters (``mturk-eval sandbox serve |
simulate``; see docs/sandbox.md)."""
