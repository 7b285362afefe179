"""The backtesting dashboard: run registry, run detail, comparison, sweeps, CSV exports."""
