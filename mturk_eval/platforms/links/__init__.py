"""Invite links: the rating site as a platform with no money in it."""
