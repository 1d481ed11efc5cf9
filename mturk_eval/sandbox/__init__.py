"""The local MTurk sandbox: a requester API server boto3 talks to unchanged, a worker site, simulated
workers and fault injection (``mturk-eval sandbox serve | simulate``; see docs/sandbox.md)."""
