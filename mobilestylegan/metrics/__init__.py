"""Evaluation: one function per metric behind a registry, and the evaluator that feeds them."""
