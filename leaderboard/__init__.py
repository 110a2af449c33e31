"""Leaderboard entries, submission and rendering, installed as dfa_bench.leaderboard."""
