"""Where the encoder is sensitive: a metric for the factorization's error.

The plain error ‖E_v − Ê_v‖² treats every direction of the embedding space
alike; the encoder does not. Its first LayerNorm removes the mean (an error
along the all-ones direction changes nothing) and the layers after it amplify
some directions and damp others. A small error δ in the input embedding x_t of
token t moves the sentence embedding s by J_t δ (J_t = ∂s/∂x_t, H×H), so the
expected squared change is δᵀ G δ with

    G = E_t[J_tᵀ J_t]    over the tokens of real sentences.

G is estimated with random probes: for u ~ N(0, I), g_t = ∂(uᵀs)/∂x_t = J_tᵀ u
and E_u[g_t g_tᵀ] = J_tᵀ J_t, so one backward pass per probe gives a sample for
every token of a batch at once.

Factorizing in this metric: with P = G^{1/2}, minimising
Σ_v w_v (E_v − Ê_v)ᵀ G (E_v − Ê_v) is the plain (weighted) problem for E·P:
approximate E·P ≈ A·B′, then Ê = A·B′·P⁻¹, i.e. B = B′·P⁻¹ (compression.table.factorize).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compression.model import Pooling, padded_batches, pool


def sentence_embedding_of_inputs(
    bert: nn.Module, inputs_embeds: torch.Tensor, mask: torch.Tensor, pooling: Pooling = Pooling()
) -> torch.Tensor:
    """The SentenceEncoder's output from given word embeddings (so that they can take gradients).
    Always normalised: fidelity is a cosine, so a change of length alone costs nothing."""
    hidden = bert(
        inputs_embeds=inputs_embeds, attention_mask=mask, token_type_ids=torch.zeros_like(mask)
    ).last_hidden_state
    return pool(hidden, mask, Pooling(pooling.mode, normalize=True))


def estimate_metric(
    bert: nn.Module,
    ids: list[list[int]],
    probes: int = 4,
    batch_size: int = 32,
    seed: int = 0,
    pooling: Pooling = Pooling(),
    progress: bool = False,
) -> np.ndarray:
    """G (H×H, float64): the mean of J_tᵀ J_t over every token of the given sentences."""
    table = bert.embeddings.word_embeddings.weight.detach()
    H = table.shape[1]
    G_hh = np.zeros((H, H))
    samples = 0
    generator = torch.Generator().manual_seed(seed)
    was_training = bert.training
    bert.eval()
    try:
        from tqdm.auto import tqdm

        for input_ids, mask in tqdm(
            padded_batches(ids, batch_size),
            total=-(-len(ids) // batch_size),
            desc="sensitivity",
            unit="batch",
            disable=not progress,
            leave=False,
        ):
            real = mask.bool()
            for _ in range(probes):
                x_bth = table[input_ids].clone().requires_grad_(True)
                s_bh = sentence_embedding_of_inputs(bert, x_bth, mask, pooling)
                u_bh = torch.randn(s_bh.shape, generator=generator)
                # gradient for the inputs only: nothing accumulates in the weights' .grad
                (g_bth,) = torch.autograd.grad((s_bh * u_bh).sum(), x_bth)
                g_nh = g_bth[real].double().numpy()  # one row J_tᵀu per real token
                G_hh += g_nh.T @ g_nh
                samples += len(g_nh)
    finally:
        bert.train(was_training)
    if samples == 0:
        raise ValueError("no tokens to estimate the sensitivity metric from")
    return G_hh / samples


SENSITIVITY_MAX_LENGTH = 64  # truncation of the sentences the sensitivity metric is estimated on


def corpus_metric(ctx, bert: nn.Module, num: int, seed: int) -> np.ndarray:
    """G from a seeded sample of `num` corpus texts, cached on disk (keyed by the model's weights, the
    pooling and the sample). `ctx`: the build's BuildContext (its corpus and disk cache)."""
    import logging

    _, ids = ctx.sample_train(num, SENSITIVITY_MAX_LENGTH, seed)
    weights = [t.detach().contiguous().numpy() for _, t in sorted(bert.state_dict().items())]

    def compute() -> dict[str, np.ndarray]:
        logging.getLogger(__name__).info("sensitivity: probing the encoder on %d corpus texts", len(ids))
        return {"G": estimate_metric(bert, ids, seed=seed, pooling=ctx.source.pooling, progress=ctx.progress)}

    key = ["v2", *weights, ctx.source.pooling, np.concatenate([np.asarray(r) for r in ids]), seed]
    return ctx.disk.get("sensitivity", key, compute)["G"]
