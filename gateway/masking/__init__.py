"""Live masking: results of masked sessions with identifiers masked (``hook.MaskingHook``)."""

from .hook import MaskingHook

__all__ = ["MaskingHook"]
