"""Analytics computed from the log: the funnel report, handoff metrics, the predictive score.

The implementation behind :mod:`buyerjourney.analytics`. Every figure is
computed from records only (and the funnel), as of any date, so a report can
be rebuilt from a stored log at any time.
"""
