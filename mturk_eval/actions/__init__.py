"""The MTurk workflow as library functions (one module per verb); ``mturk_eval.cli.hits`` is thin over them."""
