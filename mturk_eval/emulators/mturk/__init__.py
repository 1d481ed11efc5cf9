"""The local MTurk-compatible service: state (models), requester API operations (responses), worker
site (worker_site) and routing (urls), split as moto splits a service."""
