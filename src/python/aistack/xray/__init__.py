"""Chest X-ray classifier: labels, model, training, export, evaluation."""
