"""The sentiment family."""
