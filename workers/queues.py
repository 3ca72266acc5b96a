from enum import StrEnum


class Queue(StrEnum):
    """Queues by resource, so each host runs only the workers its hardware suits."""

    DEFAULT = "default"
    ROLLOUT = "rollout"  # holds a vLLM engine
    SANDBOX = "sandbox"  # runs model-written code (re-runs, code scoring)
    TRAIN = "train"  # holds a GPU for SFT
