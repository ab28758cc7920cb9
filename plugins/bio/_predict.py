"""``automl predict`` for sequences: FASTA records (``>id`` headers) or a CSV.

A file whose first non-blank character is ``>`` is read as FASTA (labels in ``>id|label``
headers are ignored), anything else as a CSV with a header whose sequence column is the
study's ``sequence_column`` option (``sequence`` by default; ``--option
sequence_column=...``) and whose ``id`` column, if any, names the rows. Residues are encoded
with the study's alphabet (an invalid one is an error naming the record) and cropped or
padded to the model's length with its crop mode, exactly as in training (the ``kmer``
space's model reads whole sequences).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from automl import PredictContext, Predictions, UserError
from automl.data import predict_rows
from automl_plugins.bio._data import encode, read_csv, read_fasta
from automl_plugins.bio._spaces import crop_tokens


def read_records(path: Path, seq_col: str) -> list[tuple[str, str]]:
    """``(id, sequence)`` of every record of a FASTA or CSV file."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; sequence prediction reads a FASTA or CSV file")
    with path.open(encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(">"):
        return [(rid, seq) for rid, _, seq in read_fasta(path)]
    return [(rid, seq) for rid, _, seq in read_csv(path, seq_col, seq_col)]


def predict_sequences(model: nn.Module, path: str, ctx: PredictContext) -> Predictions:
    """``Dataset.predict`` of the bio datasets: classify every record of a file."""
    alphabet = ctx.state.get("alphabet") or ctx.info.extra.get("alphabet")
    if not alphabet:
        raise UserError("the model's preprocessing has no alphabet (state['alphabet'])")
    p = Path(path)
    records = read_records(p, ctx.options.get("sequence_column") or "sequence")
    ids = [rid for rid, _ in records]
    tokens, _ = encode(ids, [seq for _, seq in records], alphabet, p.name)
    model_cfg = ctx.config["model"]
    if "max_len" in model_cfg:  # the torch spaces' length; the kmer space reads whole sequences
        tokens = crop_tokens(tokens, int(model_cfg["max_len"]), model_cfg["crop"])
    return predict_rows(model, tokens, ids, ctx, {"records": len(records)})
