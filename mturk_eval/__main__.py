"""Allows ``python -m mturk_eval``."""
from mturk_eval.cli import main

main()
