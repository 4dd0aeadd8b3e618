"""Policies: heuristic baselines, the oracle and learned policies (torch-free inference)."""
