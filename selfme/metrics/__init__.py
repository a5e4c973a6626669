"""MEGC2019 metrics (Eq. 17-18) and the per-sample log formats used to compare with published peers."""

from selfme.metrics.logs import read_megc_log, read_subject_list_log, write_megc_log
from selfme.metrics.scores import Scores, score, score_by_group

__all__ = ["Scores", "read_megc_log", "read_subject_list_log", "score", "score_by_group", "write_megc_log"]
