"""Stage 2: the encoder prepared for int8 serving before the table is touched — the tanh GELU swap
(activation.py), opt-in FFN pruning (prune.py) and SmoothQuant smoothing (smooth.py)."""
