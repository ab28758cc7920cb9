"""Bio search spaces: a DeepBind/Basset-style CNN, CNN + bi-GRU, and a k-mer transformer.

Inputs are right-padded integer tokens ``(N, L)`` (0 = padding). Every space searches the
sequence length a trial uses, ``max_len`` (the median, 90th percentile or longest train
length), and the ``crop`` mode (keep the ``start``, the ``center`` or the ``end`` of longer
sequences); :func:`prepare` applies them. Training adds ``class_weighted`` (inverse class
frequency weights in the cross-entropy) and, for DNA and RNA, ``rc_augment``: each training
sequence is replaced by its reverse complement with probability 1/2 (see :func:`step`).

For DNA and RNA every space also searches ``rc_average`` (see :class:`RCAverage`): ``off``;
``predict``, the model's outputs on a sequence and on its reverse complement are averaged
when it predicts (after training as usual: test-time augmentation over the two strands);
``always``, averaged in training too (a "conjoined" model whose output is the same on both
strands).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl import DataBundle, DataInfo, Split, TrainContext
from automl.data import call_model
from automl.training import suggest_training
from automl_plugins.bio._data import COMPLEMENT

CROPS = ("start", "center", "end")
RC_AVERAGE = ("off", "predict", "always")


def crop_tokens(tokens: torch.Tensor, max_len: int, mode: str) -> torch.Tensor:
    """Crop right-padded tokens to ``max_len`` (keeping the start, center or end of each
    sequence's real residues) and right-pad shorter ones with 0."""
    lengths = (tokens > 0).sum(dim=1)
    if mode == "start":
        offset = torch.zeros_like(lengths)
    elif mode == "center":
        offset = ((lengths - max_len).clamp(min=0)) // 2
    elif mode == "end":
        offset = (lengths - max_len).clamp(min=0)
    else:
        raise ValueError(f"unknown crop mode {mode!r}; valid: {', '.join(CROPS)}")
    cols = offset[:, None] + torch.arange(max_len, device=tokens.device)[None, :]
    # Right-padding (zeros) past each sequence's end, and as many columns again for the gather.
    return F.pad(tokens, (0, max_len)).gather(1, cols)


def prepare(data: DataBundle, config: dict[str, Any]) -> DataBundle:
    """Crop / pad every split to the config's ``max_len`` with its ``crop`` mode (learns nothing)."""
    max_len, mode = int(config["model"]["max_len"]), config["model"]["crop"]

    def fix(split: Split) -> Split:
        return Split(crop_tokens(split.inputs.long(), max_len, mode), split.targets)

    info = data.info.replace(input_shape=(max_len,))
    return DataBundle(fix(data.train), fix(data.val), fix(data.test), info, data.state, data.summary, data.evaluate)


def _length(trial, info: DataInfo) -> dict[str, Any]:
    """The length and crop every space searches, and ``rc_average`` for DNA / RNA."""
    cfg = {"max_len": trial.suggest_categorical("max_len", list(info.extra["length_choices"])),
           "crop": trial.suggest_categorical("crop", list(CROPS))}
    if info.extra.get("alphabet") in COMPLEMENT:
        cfg["rc_average"] = trial.suggest_categorical("rc_average", list(RC_AVERAGE))
    return cfg


class OneHot(nn.Module):
    """Tokens ``(N, L)`` -> one-hot channels ``(N, vocab - 1, L)``; padding is all zeros."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens, self.vocab)[..., 1:].transpose(1, 2).float()


def _masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Global max over positions ``(N, C, L)`` where ``mask`` ``(N, L)`` is true."""
    return h.masked_fill(~mask[:, None, :], -1e4).amax(dim=2)


class MotifCNN(nn.Module):
    """DeepBind / Basset style: one-hot -> conv with motif-width kernels -> ReLU ->
    (optional further conv blocks) -> global max pool -> dropout -> dense head."""

    def __init__(self, vocab: int, classes: int, filters: int, kernel: int, blocks: int,
                 hidden: int, dropout: float) -> None:
        super().__init__()
        self.onehot = OneHot(vocab)
        layers: list[nn.Module] = [nn.Conv1d(vocab - 1, filters, kernel, padding=kernel // 2), nn.ReLU()]
        for _ in range(blocks - 1):
            layers += [nn.Conv1d(filters, filters, 5, padding=2), nn.BatchNorm1d(filters), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(filters, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.convs(self.onehot(tokens))
        mask = F.interpolate((tokens > 0)[:, None].float(), size=h.shape[2], mode="nearest")[:, 0] > 0
        return self.head(_masked_max(h, mask))


class ConvGRU(nn.Module):
    """Convolution (motif scanner) -> max pool -> bidirectional GRU -> max + mean pooling over
    real positions -> dense head (DanQ-style)."""

    def __init__(self, vocab: int, classes: int, filters: int, kernel: int, pool: int,
                 hidden: int, dropout: float) -> None:
        super().__init__()
        self.onehot = OneHot(vocab)
        self.conv = nn.Sequential(nn.Conv1d(vocab - 1, filters, kernel, padding=kernel // 2), nn.ReLU(),
                                  nn.MaxPool1d(pool, ceil_mode=True), nn.Dropout(dropout))
        self.pool = pool
        self.gru = nn.GRU(filters, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * hidden, classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.onehot(tokens))  # (N, F, L')
        mask = F.max_pool1d((tokens > 0)[:, None].float(), self.pool, ceil_mode=True)[:, 0] > 0
        mask = mask[:, : h.shape[2]]
        out, _ = self.gru(h.transpose(1, 2))  # (N, L', 2H)
        out = out.transpose(1, 2)
        mean = (out * mask[:, None]).sum(2) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(torch.cat([_masked_max(out, mask), mean], dim=1))


class KmerTransformer(nn.Module):
    """Overlapping k-mer tokens (a k-mer containing padding is padding) -> embedding +
    learned positions -> transformer encoder -> mean over real k-mers -> linear head."""

    def __init__(self, vocab: int, classes: int, k: int, max_len: int, dim: int, heads: int,
                 layers: int, dropout: float) -> None:
        super().__init__()
        self.k, self.base = k, vocab - 1
        self.kmers = nn.Embedding(self.base ** k + 1, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max(1, max_len - k + 1), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, classes))

    def kmer_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, L)`` tokens -> ``(N, L - k + 1)`` k-mer ids in ``1 .. base**k`` (0 = padding)."""
        if tokens.shape[1] < self.k:
            tokens = F.pad(tokens, (0, self.k - tokens.shape[1]))
        windows = tokens.unfold(1, self.k, 1)  # (N, L-k+1, k)
        powers = self.base ** torch.arange(self.k - 1, -1, -1, device=tokens.device)
        ids = ((windows - 1).clamp(min=0) * powers).sum(-1) + 1
        return torch.where((windows > 0).all(-1), ids, torch.zeros_like(ids))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        ids = self.kmer_ids(tokens)[:, : self.pos.shape[0]]
        mask = ids > 0
        h = self.kmers(ids) + self.pos[: ids.shape[1]]
        h = self.encoder(h, src_key_padding_mask=~mask)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(pooled)


def define_cnn(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest the length, crop, filters, motif kernel width, depth, head and dropout."""
    return {**_length(trial, info),
            "filters": trial.suggest_categorical("filters", [32, 64, 128]),
            "kernel": trial.suggest_categorical("kernel", [7, 11, 15, 19]),
            "blocks": trial.suggest_int("blocks", 1, 2),
            "hidden": trial.suggest_categorical("hidden", [32, 64]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5)}


def build_cnn(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build :class:`MotifCNN` for the alphabet and classes."""
    return strands(MotifCNN(info.extra["vocab"], info.num_classes, cfg["filters"], cfg["kernel"], cfg["blocks"],
                            cfg["hidden"], cfg["dropout"]), cfg, info)


def define_cnn_rnn(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest the length, crop, filters, kernel, pooling, GRU width and dropout."""
    return {**_length(trial, info),
            "filters": trial.suggest_categorical("filters", [32, 64]),
            "kernel": trial.suggest_categorical("kernel", [7, 11, 15]),
            "pool": trial.suggest_categorical("pool", [2, 4]),
            "hidden": trial.suggest_categorical("hidden", [16, 32, 64]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5)}


def build_cnn_rnn(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build :class:`ConvGRU` for the alphabet and classes."""
    return strands(ConvGRU(info.extra["vocab"], info.num_classes, cfg["filters"], cfg["kernel"], cfg["pool"],
                           cfg["hidden"], cfg["dropout"]), cfg, info)


def define_transformer(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest the length, crop, k (3-6 for nucleotides, 1-2 for protein), width, heads, depth, dropout."""
    nucleotide = info.extra["alphabet"] in COMPLEMENT
    return {**_length(trial, info),
            "k": trial.suggest_int("k", 3, 6) if nucleotide else trial.suggest_int("k", 1, 2),
            "dim": trial.suggest_categorical("dim", [32, 64]),
            "heads": trial.suggest_categorical("heads", [2, 4]),
            "layers": trial.suggest_int("layers", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3)}


def build_transformer(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build :class:`KmerTransformer` for the alphabet, classes and length."""
    return strands(KmerTransformer(info.extra["vocab"], info.num_classes, cfg["k"], cfg["max_len"], cfg["dim"],
                                   cfg["heads"], cfg["layers"], cfg["dropout"]), cfg, info)


def train_space(trial, info: DataInfo) -> dict[str, Any]:
    """The usual training hyperparameters plus ``class_weighted`` and (DNA / RNA) ``rc_augment``."""
    cfg = suggest_training(trial, info, epochs=(8, 16), batch_sizes=(64, 128, 256), lr=(1e-3, 2e-2),
                           weight_decay=(1e-6, 1e-3), optimizers=("adam", "adamw"), patience=5)
    cfg["class_weighted"] = trial.suggest_categorical("class_weighted", [True, False])
    if info.extra["alphabet"] in COMPLEMENT:
        cfg["rc_augment"] = trial.suggest_categorical("rc_augment", [True, False])
    return cfg


def reverse_complement(tokens: torch.Tensor, alphabet: str) -> torch.Tensor:
    """Reverse complement of right-padded nucleotide tokens; the result is right-padded too."""
    return _reverse_complement(tokens, torch.tensor(COMPLEMENT[alphabet], device=tokens.device))


def _reverse_complement(tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    comp = table[tokens]
    lengths = (tokens > 0).sum(dim=1, keepdim=True)
    idx = (lengths - 1 - torch.arange(tokens.shape[1], device=tokens.device)[None, :])
    out = comp.gather(1, idx.clamp(min=0))
    return torch.where(idx >= 0, out, torch.zeros_like(out))


class RCAverage(nn.Module):
    """Averages a model's outputs (logits) on a sequence and on its reverse complement.

    ``mode`` is ``predict`` (averaged in eval mode only: the inner model trains as usual, and
    predicts from both strands) or ``always`` (averaged in training too). The complement table
    is a non-persistent buffer: the state dict is the inner model's, under ``inner.``.
    """

    def __init__(self, inner: nn.Module, alphabet: str, mode: str) -> None:
        super().__init__()
        if mode not in RC_AVERAGE[1:]:
            raise ValueError(f"unknown rc_average {mode!r}; valid: {', '.join(RC_AVERAGE)}")
        self.inner, self.mode = inner, mode
        self.register_buffer("table", torch.tensor(COMPLEMENT[alphabet]), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.inner(tokens)
        if self.mode == "always" or not self.training:
            out = (out + self.inner(_reverse_complement(tokens, self.table))) / 2
        return out


def strands(model: nn.Module, cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """``model`` wrapped in :class:`RCAverage` when the config's ``rc_average`` asks for it
    (DNA / RNA only), else ``model`` itself."""
    mode = cfg.get("rc_average", "off")
    if mode == "off" or info.extra.get("alphabet") not in COMPLEMENT:
        return model
    return RCAverage(model, info.extra["alphabet"], mode)


def step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
    """Cross-entropy (core's loss, class-weighted when ``class_weighted``); with
    ``rc_augment``, each sequence of the batch is reverse-complemented with probability 1/2."""
    alphabet = ctx.info.extra.get("alphabet")
    if ctx.config.get("rc_augment") and alphabet in COMPLEMENT:
        flip = (torch.rand(len(inputs), generator=ctx.generator) < 0.5).to(inputs.device)
        inputs = torch.where(flip[:, None], reverse_complement(inputs, alphabet), inputs)
    return ctx.loss(call_model(model, inputs), targets)

