"""The workflows: what ``imbvision train``, ``compare`` and ``demo`` do, above the saved model.

Owns the orchestration only: :mod:`~imbvision.workflows.train` (one run folder: data check, split,
fit, threshold, bundle, report), :mod:`~imbvision.workflows.compare` (the paired comparison over
splits, its cells and leaderboard), :mod:`~imbvision.workflows.promote` (from a leaderboard to the
settings of the run that trains its winner) and :mod:`~imbvision.workflows.demo`. Everything they call
lies below: the model (:mod:`imbvision.model`), training (:mod:`imbvision.training`), the comparison's
machinery (:mod:`imbvision.experiments`). Importing the package imports nothing else.
"""
