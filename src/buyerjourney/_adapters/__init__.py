"""Adapters at the edge: definition files, stores, diagrams (private).

The core never imports these; their public names are re-exported by
:mod:`buyerjourney`.
"""
