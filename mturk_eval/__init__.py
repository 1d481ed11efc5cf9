"""mturk-eval: a persona dialogue study from prompt-tuning to published human-evaluation tables.

The pipeline, one room each:
data (``mturk_eval.data``) -> generators (``mturk_eval.generators``) -> rating tasks
(``mturk_eval.tasks``: builder and templates) -> crowd platforms (``mturk_eval.platforms``; the local
emulators in ``mturk_eval.emulators``) -> ledger (``mturk_eval.ledger``) -> analysis (``mturk_eval.analysis``).
"""

__version__ = "0.1.0"
