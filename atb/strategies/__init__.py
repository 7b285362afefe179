"""Strategies: turn bars into signals, in bulk for backtests and on a window for live."""
