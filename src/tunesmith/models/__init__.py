"""Models by name: built-ins (from PyPI packages), local folders and hub ids."""

from tunesmith.models.loader import LoadedModel, converted_gguf_dir, load_model

__all__ = ["LoadedModel", "converted_gguf_dir", "load_model"]
