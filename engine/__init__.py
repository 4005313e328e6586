"""The stages' loops: training loop, optimizer, train state, pretraining, fine-tuning, evaluation.

It stands on common/, data/, models/ and losses/; tools/ and the entry scripts stand on it.
"""
