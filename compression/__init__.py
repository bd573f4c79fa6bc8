"""Offline compression pipeline: load → factorize → recover → quantize → export → evaluate."""
