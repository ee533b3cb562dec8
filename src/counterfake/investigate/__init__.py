"""Investigate an exported channel archive: which photos were turned into derivatives, by
whom, how fast it grew. Uses the hashing, banks and matching of the rest of Counterfake; adds
only the archive reader, the clustering of an archive's images and the report."""

from .archive import Post, Problem, read_archive
from .images import BankSpec
from .investigation import Investigation, investigate
from .report import write_report

__all__ = [
    "BankSpec",
    "Investigation",
    "Post",
    "Problem",
    "investigate",
    "read_archive",
    "write_report",
]
