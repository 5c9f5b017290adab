"""The auditor's room: checkpoints over the evidence chain, and the verifier."""
