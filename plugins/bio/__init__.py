"""bio: sequence classification for genomics and proteomics.

Datasets:

- ``promoters`` (default, no download): promoter-like DNA with a planted TATA-box-like motif
  at a variable position, 25% positives (see :func:`automl_plugins.bio._data.promoter_records`).
- ``fasta``: ``--data PATH`` FASTA; labels from ``>id|label`` headers or ``--option labels=CSV``
  (``id,label`` rows).
- ``csv``: ``--data PATH`` CSV with a header; ``sequence`` and ``label`` columns by default.

``--option alphabet=auto|dna|rna|protein`` (default ``auto``: detected; DNA is ACGT+N, RNA ACGU+N, protein
the 20 amino acids + XBZUO). An invalid character is an error naming the record.

Spaces: ``cnn`` (DeepBind / Basset), ``cnn_rnn`` (convolutions then a bi-GRU), ``transformer``
(a small encoder over k-mer tokens, k searched). The length (pad / crop) is searched by every
torch space, and for DNA / RNA reverse-complement averaging of the outputs (``rc_average``);
reverse-complement augmentation (DNA / RNA) and a class-weighted loss are searched training
options. ``kmer``: k-mer counts (k searched, with the reverse complement's k-mers as a choice)
and logistic regression, scikit-learn (an :class:`automl.ArrayModel`, saved with skops).
Metrics: ``auroc`` (default), ``auprc``, ``mcc``, ``balanced_accuracy``.
Baseline: ``kmer_logreg``, k-mer counts of both strands and logistic regression, ``k`` and
``C`` chosen by 5-fold cross-validation on train.
"""

from __future__ import annotations

from automl import Baseline, Dataset, Option, PluginInfo, SearchSpace, hookimpl, metrics
from automl_plugins.bio import _data, _kmer, _spaces
from automl_plugins.bio._predict import predict_sequences

CLS = ("classification",)
ALPHABET = Option("alphabet", str, "auto", "dna, rna or protein; auto detects it from the residues",
                  choices=("auto", "dna", "rna", "protein"))


@hookimpl
def plugin_info() -> PluginInfo:
    return PluginInfo(name="bio", description="Biological sequence classification (DNA, RNA, protein)",
                      default_dataset="promoters", default_space="cnn", default_metric="auroc")


@hookimpl
def register_datasets(register) -> None:
    register(Dataset(predict_new=predict_sequences, name="promoters", task="classification", load=_data.load_promoters,
                     description="built-in: 2,000 promoter-like DNA sequences, planted TATA-box motif, "
                                 "25% positive"))
    register(Dataset(predict_new=predict_sequences, name="fasta", task="classification", load=_data.load_fasta,
                     needs_path=True,
                     options=(ALPHABET, Option("labels", str, None, "CSV of id,label (else labels from '>id|label')")),
                     description="--data PATH: FASTA with '>id|label' headers or --option labels=CSV"))
    register(Dataset(predict_new=predict_sequences, name="csv", task="classification", load=_data.load_csv,
                     needs_path=True,
                     options=(ALPHABET, Option("sequence_column", str, "sequence", "column of the sequences"),
                              Option("label_column", str, "label", "column of the labels")),
                     description="--data PATH: CSV with sequence and label columns"))


@hookimpl
def register_spaces(register) -> None:
    common = dict(tasks=CLS, train=_spaces.train_space, prepare=_spaces.prepare, step=_spaces.step)
    register(SearchSpace(name="cnn", define=_spaces.define_cnn, build=_spaces.build_cnn,
                         description="DeepBind/Basset-style motif convolutions with global max pooling", **common))
    register(SearchSpace(name="cnn_rnn", define=_spaces.define_cnn_rnn, build=_spaces.build_cnn_rnn,
                         description="motif convolutions then a bidirectional GRU", **common))
    register(SearchSpace(name="transformer", define=_spaces.define_transformer,
                         build=_spaces.build_transformer,
                         description="small transformer encoder over overlapping k-mer tokens", **common))
    register(SearchSpace(name="kmer", tasks=CLS, define=_kmer.define_kmer, build=_kmer.build_kmer,
                         train=_kmer.train_none, starts=_kmer.STARTS,
                         description="k-mer counts (both strands) and logistic regression (scikit-learn)"))


@hookimpl
def register_metrics(register) -> None:
    register(metrics.AUROC)
    register(metrics.AUPRC)
    register(metrics.MCC)
    register(metrics.BALANCED_ACCURACY)


@hookimpl
def register_baselines(register) -> None:
    register(Baseline(name="kmer_logreg", tasks=CLS, fit=_kmer.fit_kmer_logreg,
                      description="k-mer counts of both strands + logistic regression (k 3-6 and C by 5-fold "
                                  "CV on train)"))
