"""Companion library of the MaxRL book.

Objectives and weight functions (:mod:`companion.objectives`), the policy-gradient advantage
estimators (:mod:`companion.estimators`), unbiased pass@k (:mod:`companion.passk`), exact
moments of gradient estimators by enumeration (:mod:`companion.exact`) and the book's figure
style (:mod:`companion.plotting`). The toy experiments live in their own modules.
"""

__version__ = "0.1.0"
