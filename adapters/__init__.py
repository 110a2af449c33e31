"""Model adapters for lmms-eval, installed as dfa_bench.adapters."""
