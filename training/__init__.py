"""PPO training, evaluation and comparison reports."""
