"""Detection quality: exact metrics over a replay, the report and its plots, NAB scoring, delayed labels.

- :mod:`stream.eval.metrics`: streaming collectors (ROC AUC, average precision, precision/recall at the
  budget, per-scenario recall and delay, card precision@k).
- :mod:`stream.eval.report`: the progress bar and the printed summary of a replay.
- :mod:`stream.eval.plots`: PR curve and alerts over time (matplotlib, optional).
- :mod:`stream.eval.nab`: the Numenta Anomaly Benchmark with NAB's own scoring.
- :mod:`stream.eval.delayed_labels`: a source wrapper that reveals labels as a live system would learn them.
- :mod:`stream.eval.data`: where the shared labelled data sets are (``RISKSTREAM_DATA``, else ``../shared/data``).
"""
