"""Evaluation of the supervised models and the Table 1 report."""
