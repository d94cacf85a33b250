"""Helpers with no ComfyUI import, shared by nodes/ and scripts/: PIL charts (plot.py) and local Hugging Face
model folders (hf.py: find, check, load offline without remote code, caption)."""
