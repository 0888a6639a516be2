"""Evaluation: metrics, predictors (classical baselines and VLMs), the evaluator, reasoning metrics."""
