"""The market_prediction dashboard: recorded model predictions and feature drift."""
