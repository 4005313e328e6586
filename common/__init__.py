"""Ground floor: checkpoints, runtime, distributed, metrics, run log, argparse kit, errors, names.

It imports nothing else of the project; every other package stands on it.
"""
