"""Built-in loaders: one module per target type."""
