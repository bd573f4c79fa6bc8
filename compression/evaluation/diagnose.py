"""Where a compressed model's infidelity comes from (`compress --diagnose`): the table's approximation
or the encoder's int8, and within the table, the rows of which tokens.

The built student is run again in torch on the held-out texts with the export's quantization simulated
(the simulation recovery trains with, which the exported file matches to about 1e-4 in fidelity), and
one part at a time is swapped for the original: the rows of the tokens the corpus shows fewer than 10
or 100 times, every row, the encoder's int8 for fp32, or both. What a swap wins is what that part
costs. If the exact table closes most of the gap, more bytes per token (a lower `--target-ratio`) is
what moves fidelity; if the fp32 encoder does, the encoder's quantization is (`--encoder-block`); if
the rows of rare tokens do, the corpus is missing the texts that would train them. With both swapped,
what is left is recovery's own change of the encoder's weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.fidelity import fidelity
from common.markdown import table
from common.onnx_encoder import pad_ids
from compression.fake_quant import set_encoder_fake_quant
from compression.model import SentenceEncoder

RARE_BELOW = (10, 100)  # corpus counts under which a token's row counts as rare
COLUMNS = ("case", "rows_exact", "fidelity_mean", "fidelity_p1")


@dataclass(frozen=True)
class Simulation:
    """The export's quantization as recovery simulates it."""

    table_quant: tuple[int, int] | None = None  # (bits, block) of the factor table, None: fp32
    encoder_int8: bool = False
    encoder_block: int | None = None
    weight_levels: int = 127


class ExactRows(nn.Module):
    """A factorized table with the rows of chosen tokens replaced by the original table's."""

    def __init__(self, table: nn.Module, E_vh: np.ndarray, exact_v: np.ndarray):
        super().__init__()
        self.table = table
        self.register_buffer("E", torch.from_numpy(np.ascontiguousarray(E_vh, dtype=np.float32)))
        self.register_buffer("exact", torch.from_numpy(np.asarray(exact_v, dtype=bool)))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.where(self.exact[input_ids].unsqueeze(-1), self.E[input_ids], self.table(input_ids))


def encode_ids(encoder: SentenceEncoder, ids: list[list[int]], batch_size: int = 64) -> np.ndarray:
    order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths together: little padding
    out = np.empty((len(ids), encoder.bert.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            pick = order[start : start + batch_size]
            batch, mask = pad_ids([ids[i] for i in pick])
            out[pick] = encoder(torch.from_numpy(batch), torch.from_numpy(mask)).numpy()
    return out


def diagnose(
    encoder: SentenceEncoder,
    E_vh: np.ndarray,
    counts_v: np.ndarray,
    ids: list[list[int]],
    reference_nd: np.ndarray,
    sim: Simulation,
) -> list[dict]:
    """One row per case: held-out fidelity of `encoder` (a factorized student) to `reference_nd`, the
    baseline's embeddings of the same texts, with the named part made exact."""
    if len(ids) == 0:
        raise ValueError("no held-out texts to diagnose on")
    embeddings = encoder.bert.embeddings
    table_module = embeddings.word_embeddings
    every = np.ones(len(E_vh), dtype=bool)
    cases: list[tuple[str, np.ndarray | None, bool]] = [("as built", None, sim.encoder_int8)]
    cases += [(f"rows of tokens seen < {n} times exact", counts_v < n, sim.encoder_int8) for n in RARE_BELOW]
    cases.append(("every row exact", every, sim.encoder_int8))
    if sim.encoder_int8:
        cases += [("encoder in fp32", None, False), ("every row exact, encoder in fp32", every, False)]
    rows = []
    try:
        table_module.fake_quant = sim.table_quant
        for label, exact, int8 in cases:
            embeddings.word_embeddings = table_module if exact is None else ExactRows(table_module, E_vh, exact)
            set_encoder_fake_quant(encoder.bert.encoder, False)
            if int8:
                set_encoder_fake_quant(encoder.bert.encoder, True, sim.encoder_block, sim.weight_levels)
            mean, p1 = fidelity(encode_ids(encoder, ids), reference_nd)
            rows.append(
                {
                    "case": label,
                    "rows_exact": 0 if exact is None else int(exact.sum()),
                    "fidelity_mean": round(mean, 5),
                    "fidelity_p1": round(p1, 5),
                }
            )
    finally:
        embeddings.word_embeddings = table_module
        table_module.fake_quant = None
        set_encoder_fake_quant(encoder.bert.encoder, False)
    return rows


def diagnosis_table(rows: list[dict]) -> str:
    return table(COLUMNS, rows)
