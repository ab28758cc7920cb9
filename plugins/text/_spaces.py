"""Text search spaces: ``bag``, ``cnn``, ``rnn`` and ``transformer``.

Every model takes ``tokens`` (long ``(N, L)``, 0 = padding) and ``lengths`` (long ``(N,)``)
and returns class logits. The tokeniser settings (``vocab_size``, ``max_len``, and n-grams
for ``bag``) are part of each model config and applied by the spaces' ``prepare``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from automl import DataInfo
from automl.training import suggest_training
from automl_plugins.text._tokens import PAD


def _trim(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding columns beyond the longest text of the batch; ``mask`` is True on tokens."""
    tokens = tokens[:, :max(1, int(lengths.max()))]
    mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
    return tokens, mask


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class Bag(nn.Module):
    """fastText-style: the mean of the embeddings of words and n-grams (``EmbeddingBag``),
    an optional hidden layer, and a linear classifier."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        super().__init__()
        dim, hidden = int(cfg["dim"]), int(cfg["hidden"])
        self.bag = nn.EmbeddingBag(int(info.extra["vocab_size"]), dim, mode="mean", padding_idx=PAD)
        layers: list[nn.Module] = [nn.Dropout(cfg["dropout"])]
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(cfg["dropout"])]
        layers.append(nn.Linear(hidden or dim, int(info.num_classes)))
        self.head = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        tokens, _ = _trim(tokens, lengths)
        return self.head(self.bag(tokens))


class CNN(nn.Module):
    """1-D convolutions of several widths over the embeddings, max-pooled over the text."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        super().__init__()
        dim, filters = int(cfg["dim"]), int(cfg["filters"])
        self.kernels = [int(k) for k in str(cfg["kernels"]).split(",")]
        self.embed = nn.Embedding(int(info.extra["vocab_size"]), dim, padding_idx=PAD)
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, k, padding=k // 2) for k in self.kernels)
        self.drop = nn.Dropout(cfg["dropout"])
        self.head = nn.Linear(filters * len(self.kernels), int(info.num_classes))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        tokens, mask = _trim(tokens, lengths)
        x = self.drop(self.embed(tokens)).transpose(1, 2)  # (N, dim, L)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))[:, :, :tokens.shape[1]]
            pooled.append(h.masked_fill(~mask[:, None, :], float("-inf")).amax(dim=2))
        return self.head(self.drop(torch.cat(pooled, dim=1)))


class RNN(nn.Module):
    """Bidirectional GRU or LSTM over packed sequences (padding never enters the state); the
    last hidden state of each direction and the masked mean of the outputs feed the head."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        super().__init__()
        dim, hidden, layers = int(cfg["dim"]), int(cfg["hidden"]), int(cfg["layers"])
        self.embed = nn.Embedding(int(info.extra["vocab_size"]), dim, padding_idx=PAD)
        kind = nn.GRU if cfg["cell"] == "gru" else nn.LSTM
        self.rnn = kind(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                        dropout=float(cfg["dropout"]) if layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg["dropout"])
        self.head = nn.Linear(4 * hidden, int(info.num_classes))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        tokens, mask = _trim(tokens, lengths)
        x = self.drop(self.embed(tokens))
        packed = pack_padded_sequence(x, lengths.clamp(min=1, max=tokens.shape[1]).cpu(),
                                      batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # (layers * 2, N, hidden)
        last = torch.cat([h[-2], h[-1]], dim=1)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        return self.head(self.drop(torch.cat([last, _masked_mean(out, mask)], dim=1)))


class Transformer(nn.Module):
    """Token and learned position embeddings, a small ``nn.TransformerEncoder`` with a
    padding mask, masked mean pooling and a linear head."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        super().__init__()
        d = int(cfg["d_model"])
        self.embed = nn.Embedding(int(info.extra["vocab_size"]), d, padding_idx=PAD)
        self.pos = nn.Embedding(int(info.extra.get("max_len", cfg["max_len"])), d)
        layer = nn.TransformerEncoderLayer(d, int(cfg["heads"]), d * int(cfg["ff_mult"]), float(cfg["dropout"]),
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, int(cfg["layers"]), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, int(info.num_classes))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        tokens, mask = _trim(tokens, lengths)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.pos(positions)[None]
        x = self.encoder(x, src_key_padding_mask=~mask)
        return self.head(_masked_mean(self.norm(x), mask))


def _tokenizer(trial, max_lens: list[int]) -> dict[str, Any]:
    return {"vocab_size": trial.suggest_categorical("vocab_size", [2000, 5000, 20000]),
            "max_len": trial.suggest_categorical("max_len", max_lens)}


def define_bag(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: vocabulary size, max length, word n-grams (1-3), character n-grams (none or
    3), embedding size, hidden layer and dropout."""
    return {**_tokenizer(trial, [64, 128, 256]),
            "word_ngrams": trial.suggest_int("word_ngrams", 1, 3),
            "char_ngrams": trial.suggest_categorical("char_ngrams", [0, 3]),
            "dim": trial.suggest_categorical("dim", [32, 64, 128]),
            "hidden": trial.suggest_categorical("hidden", [0, 64, 128]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5)}


def define_cnn(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: vocabulary size, max length, embedding size, filters, kernel widths, dropout."""
    return {**_tokenizer(trial, [32, 64, 128]),
            "dim": trial.suggest_categorical("dim", [32, 64, 128]),
            "filters": trial.suggest_categorical("filters", [32, 64, 128]),
            "kernels": trial.suggest_categorical("kernels", ["2,3,4", "3,5", "3,5,7"]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5)}


def define_rnn(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: vocabulary size, max length, cell (GRU or LSTM), embedding and hidden sizes,
    layers (1-2), dropout."""
    return {**_tokenizer(trial, [32, 64, 128]),
            "cell": trial.suggest_categorical("cell", ["gru", "lstm"]),
            "dim": trial.suggest_categorical("dim", [32, 64, 128]),
            "hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
            "layers": trial.suggest_int("layers", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5)}


def define_transformer(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: vocabulary size, max length, model width, heads, layers (1-2), feed-forward
    width and dropout."""
    return {**_tokenizer(trial, [32, 64, 128]),
            "d_model": trial.suggest_categorical("d_model", [32, 64, 128]),
            "heads": trial.suggest_categorical("heads", [2, 4]),
            "layers": trial.suggest_int("layers", 1, 2),
            "ff_mult": trial.suggest_categorical("ff_mult", [2, 4]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3)}


def build_bag(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build the :class:`Bag` model for a config."""
    return Bag(cfg, info)


def build_cnn(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build the :class:`CNN` model for a config."""
    return CNN(cfg, info)


def build_rnn(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build the :class:`RNN` model for a config."""
    return RNN(cfg, info)


def build_transformer(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build the :class:`Transformer` model for a config."""
    return Transformer(cfg, info)


def train_space(trial, info: DataInfo) -> dict[str, Any]:
    """Training hyperparameters for text models, with gradient clipping for the RNNs."""
    cfg = suggest_training(trial, info, epochs=(6, 20), batch_sizes=(32, 64, 128), lr=(5e-4, 1e-2),
                           optimizers=("adam", "adamw"), patience=4)
    cfg["grad_clip"] = 1.0
    return cfg
