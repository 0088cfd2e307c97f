"""This repository's own invoke entry: the wheeltasks task library."""

from wheeltasks import ns

__all__ = ["ns"]
