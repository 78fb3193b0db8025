"""The wordlm family."""
