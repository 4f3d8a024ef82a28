"""mftt package."""
