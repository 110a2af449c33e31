"""DFA-Bench: interactive deepfake analysis benchmark for multimodal LLMs."""

__version__ = "0.1.0"
