"""Leaderboard entries, submission and rendering, installed as dfa_bench.leaderboard (see README.md here).

No torch or lmms-eval import: everything here reads JSON files and calls the scoring core.
"""
