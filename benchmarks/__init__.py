"""mailbot's benchmark: see run.py."""
