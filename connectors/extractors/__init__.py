"""Built-in extractors: one module per source type."""
