"""Commands for operators and auditors; thin, they call engine, store and crypto."""
