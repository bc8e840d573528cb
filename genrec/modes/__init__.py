"""The decoding modes, one object each (:mod:`.base` says what a mode owns)."""

from genrec.modes.base import Decoded, DecodingMode, Job, Picks, Plan
from genrec.modes.describe import DescribeMode
from genrec.modes.generate import GenerateMode
from genrec.modes.likelihood import LikelihoodMode
from genrec.modes.rank import RankMode

MODES: dict[str, DecodingMode] = {
    m.name: m for m in (RankMode(), GenerateMode(), DescribeMode(), LikelihoodMode())
}

__all__ = [
    "MODES",
    "Decoded",
    "DecodingMode",
    "DescribeMode",
    "GenerateMode",
    "LikelihoodMode",
    "Job",
    "Picks",
    "Plan",
    "RankMode",
]
