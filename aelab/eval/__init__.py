"""Evaluation: metrics of codes and reconstructions, the importance-sampled NLL, disentanglement scores, plots."""
