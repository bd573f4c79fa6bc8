"""Stage 3: the token-embedding table compressed — its size chosen (sizing.py), the encoder's
sensitivity metric estimated (sensitivity.py, metric.py), the factorization (factorize.py) and the
torch modules that hold each storage scheme (embeddings/)."""
