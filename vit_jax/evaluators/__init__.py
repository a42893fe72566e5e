"""Evaluators: what a model scores on data (classification, few-shot,
zero-shot)."""
