"""TinyMLM: a small Transformer encoder θ and an output layer W, and the shipped checkpoint.

``model.encoder`` (θ) turns the corrupted input x̄ into one vector per position;
``model.output_layer`` (W) turns each vector into one logit per vocabulary token; the softmax of
the logits at position i is the predicted distribution Pr_i^{W,θ}(·|x̄).
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlmcourse.vocab import Vocabulary

CHECKPOINT = "tinymlm.pt"


class Encoder(nn.Module):
    """θ: token and position embeddings, then a stack of Transformer encoder layers.

    The layout is BERT's: the summed embeddings are normalised (LayerNorm), and each layer
    normalises after its residual connection; at this size it learns much faster than the
    pre-norm layout.
    """

    def __init__(
        self, vocab_size: int, d_model: int, n_heads: int, n_layers: int, max_len: int,
        dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.embedding_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=dropout,
            activation="gelu", batch_first=True,
        )  # fmt: skip
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B, T) mask (1 = token, 0 = padding) -> (B, T, d_model) vectors."""
        T = input_ids.shape[1]
        if T > self.max_len:
            raise ValueError(
                f"the sequence has {T} tokens but the model takes at most max_len={self.max_len}; "
                "shorten the text or build the model with a larger max_len."
            )
        positions = torch.arange(T, device=input_ids.device)
        h = self.token_embedding(input_ids) + self.position_embedding(positions)
        h = self.dropout(self.embedding_norm(h))
        return self.layers(h, src_key_padding_mask=attention_mask == 0)


class TinyMLM(nn.Module):
    """A masked language model small enough to train on a laptop CPU in seconds.

    ``forward(x̄) -> logits`` of shape (B, T, V); ``softmax(logits[b, i])`` is Pr_i^{W,θ}(·|x̄).
    ``config`` holds the constructor arguments: ``TinyMLM(**model.config)`` rebuilds it.
    """

    def __init__(
        self, vocab_size: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
        max_len: int = 64, dropout: float = 0.1, pad_id: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        if d_model % n_heads:
            raise ValueError(
                f"d_model={d_model} must be divisible by n_heads={n_heads}; "
                "each attention head gets d_model / n_heads dimensions."
            )
        self.config: dict[str, Any] = dict(
            vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers,
            max_len=max_len, dropout=dropout, pad_id=pad_id,
        )  # fmt: skip
        self.pad_id = pad_id
        self.encoder = Encoder(vocab_size, d_model, n_heads, n_layers, max_len, dropout)  # θ
        self.output_layer = nn.Linear(d_model, vocab_size)  # W
        self.apply(_init_weights)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, V) for ids (B, T); padding (mask 0, default: ids == pad_id) is ignored."""
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}; "
                "add a batch dimension with input_ids.unsqueeze(0)."
            )
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_id).long()
        return self.output_layer(self.encoder(input_ids, attention_mask))


def _init_weights(module: nn.Module) -> None:
    """Small normal weights, as in BERT and minGPT (std 0.02), zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


@torch.no_grad()
def predicted_distribution(
    model: TinyMLM,
    text_or_ids: str | list[int] | torch.Tensor,
    position: int,
    vocab: Vocabulary | None = None,
) -> torch.Tensor:
    """Pr_i^{W,θ}(·|x̄) at ``i = position``: ``softmax(logits[position])``, a (V,) tensor.

    ``text_or_ids`` is x̄, as text (encoded with ``vocab``, so position 0 is [CLS]) or as ids.
    The model runs in eval mode (no dropout) without gradients; its mode is restored after.
    """
    if isinstance(text_or_ids, str):
        if vocab is None:
            raise ValueError("text needs a vocabulary to encode it: pass vocab=...")
        ids = torch.tensor(vocab.encode(text_or_ids), dtype=torch.long)
    else:
        ids = torch.as_tensor(text_or_ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(
            f"pass one sequence (1-D ids), got shape {tuple(ids.shape)}; "
            "call predicted_distribution once per sequence."
        )
    if not 0 <= position < len(ids):
        raise IndexError(
            f"position {position} is outside the sequence; valid positions are 0 to "
            f"{len(ids) - 1} (0 is [CLS] when the text was encoded with special tokens)."
        )
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        logits = model(ids.unsqueeze(0).to(device))[0, position]
    finally:
        model.train(was_training)
    return torch.softmax(logits.float(), dim=-1).cpu()


def save_checkpoint(model: TinyMLM, vocab: Vocabulary, path: str | Path) -> Path:
    """Save the model's weights and config and the vocabulary's tokens to ``path``."""
    if model.config["vocab_size"] != len(vocab):
        raise ValueError(
            f"the model predicts over {model.config['vocab_size']} tokens but the vocabulary "
            f"has {len(vocab)}; save the vocabulary the model was built for."
        )
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": dict(model.config), "tokens": vocab.tokens}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[TinyMLM, Vocabulary]:
    """Load a checkpoint written by :func:`save_checkpoint`: the model in eval mode, on CPU."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyMLM(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), Vocabulary(checkpoint["tokens"])


def load_pretrained() -> tuple[TinyMLM, Vocabulary]:
    """The TinyMLM trained on the shipped corpus (``mlmcourse/data/tinymlm.pt``) and its vocab."""
    with as_file(files("mlmcourse").joinpath("data", CHECKPOINT)) as path:
        if not path.exists():
            raise FileNotFoundError(
                f"the shipped checkpoint {path} is missing; reinstall mlmcourse or retrain it "
                "with `mlmcourse train --out mlmcourse/data/tinymlm.pt`."
            )
        return load_checkpoint(path)
