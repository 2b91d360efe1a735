"""Environments: factories for Atari and Gymnasium tasks, and the task schedule."""
