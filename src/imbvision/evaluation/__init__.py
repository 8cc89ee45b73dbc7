"""Evaluation for a rare positive class: metrics with bootstrap CIs, threshold
tuning on validation, calibration, plots and a self-contained HTML report.

Label 1 is the rare positive class; scores are predicted probabilities of it.
"""

from .calibration import (
    CALIBRATION_METHODS,
    Calibrator,
    brier,
    effective_train_prior,
    expected_calibration_error,
    fit_calibrator,
    prior_shift_correct,
    reliability_curve,
)
from .metrics import (
    average_precision,
    bootstrap_ci,
    check_binary_scores,
    evaluate_scores,
    precision_at_recall,
    ranking_metrics,
    recall_at_precision,
    roc_auc,
    threshold_metrics,
)
from .plots import (
    figure_to_png,
    plot_image_grid,
    plot_pr_curve,
    plot_pr_curves,
    plot_reliability,
    plot_roc_curve,
    plot_roc_curves,
    plot_score_histograms,
    save_figure,
    save_image_grid,
    save_pr_curve,
    save_pr_curves,
    save_reliability,
    save_roc_curve,
    save_roc_curves,
    save_score_histograms,
)
from .postprocess import Postprocess, correct_prior, fit_postprocess
from .report import Report, build_run_report, format_value
from .threshold import (
    DEFAULT_THRESHOLD_GRID,
    VALID_RULES,
    ThresholdChoice,
    ThresholdRule,
    parse_threshold_rule,
    threshold_table,
    tune_threshold,
)

__all__ = [
    # metrics
    "average_precision",
    "roc_auc",
    "threshold_metrics",
    "ranking_metrics",
    "recall_at_precision",
    "precision_at_recall",
    "bootstrap_ci",
    "evaluate_scores",
    "check_binary_scores",
    # threshold
    "ThresholdRule",
    "ThresholdChoice",
    "parse_threshold_rule",
    "tune_threshold",
    "threshold_table",
    "VALID_RULES",
    "DEFAULT_THRESHOLD_GRID",
    # calibration
    "prior_shift_correct",
    "effective_train_prior",
    "Calibrator",
    "fit_calibrator",
    "CALIBRATION_METHODS",
    "brier",
    "reliability_curve",
    "expected_calibration_error",
    # post-processing
    "Postprocess",
    "fit_postprocess",
    "correct_prior",
    # plots
    "plot_pr_curve",
    "plot_pr_curves",
    "plot_roc_curve",
    "plot_roc_curves",
    "plot_score_histograms",
    "plot_reliability",
    "plot_image_grid",
    "figure_to_png",
    "save_figure",
    "save_pr_curve",
    "save_pr_curves",
    "save_roc_curve",
    "save_roc_curves",
    "save_score_histograms",
    "save_reliability",
    "save_image_grid",
    # report
    "Report",
    "build_run_report",
    "format_value",
]
