"""Stage 6: what the variant is worth — STS, fidelity and the linear probe (evaluate.py,
linear_probe.py), where its loss comes from (diagnose.py), heads, sweeps and the results report."""
