"""mturk-eval: a persona dialogue study from prompt-tuning to published human-evaluation tables.

The pipeline, one room each:
data (``mturk_eval.data``) -> generators (``mturk_eval.generators``) -> HIT builder
(``mturk_eval.hits`` + ``mturk_eval/templates``) -> MTurk, real or the local emulator
(``mturk_eval.mturk``, ``mturk_eval.sandbox``) -> ledger (``mturk_eval.ledger``) ->
analysis (``mturk_eval.analysis``).
"""

__version__ = "0.1.0"
