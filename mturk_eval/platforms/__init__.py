"""Crowd platforms: the neutral interface, the registry, and one package per platform."""
