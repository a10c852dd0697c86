"""The riskstream engine: events, sources, features, the pipeline, checkpoints, configuration and the CLI."""
