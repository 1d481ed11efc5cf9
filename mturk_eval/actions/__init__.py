"""The MTurk workflow as library functions (one module per verb); ``mturk_eval.cli.<verb>`` is thin over each."""
