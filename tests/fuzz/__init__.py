"""Differential fuzzing: random models compiled vs eager vs the IR interpreter (issue 14)."""
