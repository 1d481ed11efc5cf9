"""A local Prolific-compatible emulator (moto style): models (state), responses (operations), urls (routing)."""
