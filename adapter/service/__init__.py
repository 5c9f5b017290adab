"""The unattended service: scheduler wiring, signals, instance lock."""
