"""Stage 4: recovery by distillation from the uncompressed model (recover.py), with the export's
int8 simulated while training (fake_quant.py) and rare-token copies of the corpus (augment.py)."""
