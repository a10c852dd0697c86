"""Benchmarks behind ``riskstream bench``: every figure is a ratio against a baseline run in the same process.

- :mod:`stream.bench.pipeline`: replay events/s beside river's ``MinMaxScaler | HalfSpaceTrees``.
- :mod:`stream.bench.kafka`: end to end through a real broker beside raw kafka-python consumption.
- :mod:`stream.bench.postgres`: alert rows/s of the SQL sink beside plain DBAPI inserts.
"""
