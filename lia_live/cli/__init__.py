"""Command-line entry points. Each parses options into a typed config and calls library code."""
