"""The SSF-style base model."""
