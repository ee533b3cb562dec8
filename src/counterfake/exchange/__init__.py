"""Exchanging banks with other instances and hash-sharing programmes."""

from .formats import FORMATS, parse_lines, write_entries

__all__ = ["FORMATS", "parse_lines", "write_entries"]
