"""Dataset diagnostics and the minority label-noise audit.

:func:`run_audit` measures the imbalance (counts, ratio, the accuracy of
always answering "negative"), duplicates (exact and near, label conflicts,
split leaks), hardness (neighbourhoods, Tomek links, cross-validated AP) and
ranks label suspects in both directions; it never modifies the data.
:func:`apply_review` turns the user's decisions into a new manifest.
"""

from .core import AuditResult, run_audit
from .review import apply_review

__all__ = ["run_audit", "apply_review", "AuditResult"]
