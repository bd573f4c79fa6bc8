"""Step 4 of 8 (see build.py) — recover by distillation: train the compressed student so its sentence
embeddings match the original model's (the teacher's) on train-split sentences.

Loss: 1 − cos(student, teacher), the quantity fidelity measures. With `qat` on,
the student runs with the quantization it will be exported with simulated
(compression.fake_quant), so training also absorbs the rounding error.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from common.onnx_encoder import pad_ids
from compression.config import RecoverConfig  # noqa: F401 (re-exported)
from compression.errors import ConfigError, PipelineError
from compression.fake_quant import set_encoder_fake_quant
from compression.model import SentenceEncoder, hidden_states, pool
from compression.table.embeddings import FactorizedEmbedding

log = logging.getLogger(__name__)


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar-length sentences in random order: far less padding than random batches."""
    order = np.argsort(lengths + rng.random(len(lengths)), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _cosine_loss(student_bd: torch.Tensor, teacher_bd: torch.Tensor) -> torch.Tensor:
    # A source without a Normalize module gives vectors of any length; fidelity is their cosine.
    return 1.0 - nn.functional.cosine_similarity(student_bd, teacher_bd, dim=-1).mean()


def _anchor_loss(
    emb: FactorizedEmbedding, target_vh: torch.Tensor, metric_root_hh: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Relative error of the sampled table rows in the factorization's metric:
    Σ‖(Ê_v − E_v)P‖² / Σ‖E_v P‖² (P = G^½, or I for the euclidean metric)."""
    diff = (emb(rows) - target_vh[rows]) @ metric_root_hh
    return diff.pow(2).sum() / (target_vh[rows] @ metric_root_hh).pow(2).sum()


def _token_loss(student_bth: torch.Tensor, teacher_bth: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
    """Mean 1 − cos between the student's and the teacher's hidden state over the real tokens."""
    mask = mask_bt.to(student_bth.dtype)
    per_token = 1.0 - nn.functional.cosine_similarity(student_bth, teacher_bth, dim=-1)
    return (per_token * mask).sum() / mask.sum()


def distill(
    student: SentenceEncoder,
    ids: list[list[int]],
    teacher_nd: np.ndarray,
    config: RecoverConfig,
    table_quant: tuple[int, int] | None,
    encoder_int8: bool,
    progress: bool = True,
    encoder_block: int | None = None,
    anchor_target: tuple[np.ndarray, np.ndarray] | None = None,
    device: str = "cpu",
    weight_levels: int = 127,
    token_teacher: nn.Module | None = None,
) -> list[float]:
    """Train `student` in place; returns the loss curve (one value per step).

    ids: token ids per sentence (already truncated), teacher_nd: the teacher's
    unit embeddings of the same sentences. encoder_block: the encoder's int8 is the block
    scheme with this block (None: dynamic int8), simulated as such.
    anchor_target: (E (V×H), P (H×H)) — the original table and the factorization's metric root —
    when config.anchor > 0: the loss adds anchor × the relative table error of a uniform sample of
    rows, so rows of tokens the corpus never shows stay faithful while shared centroids move.
    """
    if config.steps == 0:
        return []
    if len(ids) == 0:
        raise ConfigError("distillation corpus is empty")
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    emb = student.bert.embeddings.word_embeddings
    if not isinstance(emb, FactorizedEmbedding):
        raise ConfigError("recovery needs a factorized student")

    for p in student.parameters():
        p.requires_grad = False
    groups = [{"params": [t.weight for t in emb.code_tables()], "lr": config.lr}]
    if config.b_lr > 0:
        groups.append({"params": [emb.B.weight], "lr": config.b_lr})
    for group in groups:
        for p in group["params"]:
            p.requires_grad = True
    if config.encoder_lr > 0:
        enc_params = [p for n, p in student.bert.named_parameters() if not n.startswith("embeddings.word_embeddings")]
        for p in enc_params:
            p.requires_grad = True
        groups.append({"params": enc_params, "lr": config.encoder_lr})
    optimizer = torch.optim.Adam(groups)
    base_lrs = [g["lr"] for g in groups]

    if config.qat:
        emb.fake_quant = table_quant
        if encoder_int8:
            set_encoder_fake_quant(student.bert.encoder, True, encoder_block, weight_levels)
    if config.token_weight > 0:
        if token_teacher is None:
            raise ConfigError("the token-level term needs the teacher's transformer")
        token_teacher = token_teacher.to(device).eval()
        for p in token_teacher.parameters():
            p.requires_grad = False
    anchor = None
    if config.anchor > 0:
        if anchor_target is None:
            raise ConfigError("the table anchor needs the original table and metric")
        anchor = tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in anchor_target)
    lengths = np.asarray([len(x) for x in ids])
    teacher = torch.from_numpy(np.ascontiguousarray(teacher_nd, dtype=np.float32)).to(device)
    if anchor is not None:
        anchor = tuple(a.to(device) for a in anchor)
    student.to(device)
    losses: list[float] = []
    student.eval()  # no dropout: the target is deterministic, dropout noise would be the loss floor
    batches: list[np.ndarray] = []
    bar = tqdm(total=config.steps, desc="distil", disable=not progress, unit="step")
    try:
        for step in range(config.steps):
            if not batches:
                batches = length_bucketed_batches(lengths, config.batch_size, rng)
            idx = batches.pop()
            batch_ids, mask = pad_ids([ids[i] for i in idx])
            # Cosine decay with a short warm-up: stable start, small final steps.
            warm = min(1.0, (step + 1) / max(1, config.steps // 20))
            scale = warm * 0.5 * (1 + math.cos(math.pi * step / config.steps))
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * scale
            batch_ids_t, mask_t = torch.from_numpy(batch_ids).to(device), torch.from_numpy(mask).to(device)
            token_term = 0.0
            if config.token_weight > 0:
                hidden = hidden_states(student.bert, batch_ids_t, mask_t)
                out = pool(hidden, mask_t, student.pooling)
                with torch.no_grad():
                    target = hidden_states(token_teacher, batch_ids_t, mask_t)
                token_term = config.token_weight * _token_loss(hidden, target, mask_t)
            else:
                out = student(batch_ids_t, mask_t)
            cos_loss = _cosine_loss(out, teacher[torch.from_numpy(idx).to(device)])
            loss = cos_loss + token_term
            if anchor is not None:
                rows = torch.from_numpy(rng.integers(0, anchor[0].shape[0], config.anchor_tokens)).to(device)
                loss = loss + config.anchor * _anchor_loss(emb, *anchor, rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            emb.constrain()
            losses.append(cos_loss.item())  # the curve tracks fidelity, not the anchor term
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.5f}")
            if (step + 1) % max(1, config.steps // 10) == 0:  # a log without a bar (CI, --no-progress) hears too
                log.info("distil: step %d of %d, loss %.5f", step + 1, config.steps, np.mean(losses[-20:]))
    except KeyboardInterrupt as exc:
        raise PipelineError("recovery interrupted; nothing was written") from exc
    finally:
        bar.close()
        student.to("cpu")  # export and evaluation run on the CPU
        if token_teacher is not None:
            token_teacher.to("cpu")  # the source model, which later variants start from
        student.eval()
        emb.fake_quant = None
        set_encoder_fake_quant(student.bert.encoder, False)
        for p in student.parameters():
            p.requires_grad = False
    return losses
