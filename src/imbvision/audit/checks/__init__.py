"""The audit's checks, one signal per module, run in this order by :func:`imbvision.audit.run_audit`.

A new signal is one module with a :class:`~.base.Check` subclass plus its entry in :data:`CHECKS`.
"""

from .base import MIN_MINORITY, AuditContext, AuditSettings, Check
from .counts import CountsCheck
from .duplicates import DuplicatesCheck
from .hardness import HardnessCheck
from .label_noise import KNN_VOTE, LIST_SCORE, RELABEL_SCORE, REVIEW_SCORE, LabelNoiseCheck
from .masks import MaskedPositiveGuard, MaskLabelCheck

__all__ = ["CHECKS", "AuditContext", "AuditSettings", "Check", "MIN_MINORITY", "LIST_SCORE", "REVIEW_SCORE",
           "RELABEL_SCORE", "KNN_VOTE"]

#: Order matters: evidence from duplicates and masks decides who the noise check lists;
#: the guard runs after every check that can suggest "relabel".
CHECKS: tuple[Check, ...] = (
    CountsCheck(), DuplicatesCheck(), MaskLabelCheck(), HardnessCheck(), LabelNoiseCheck(), MaskedPositiveGuard(),
)
