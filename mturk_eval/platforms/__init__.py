"""Crowd platforms behind one interface (:mod:`mturk_eval.platforms.crowd_platform`), one package each."""
