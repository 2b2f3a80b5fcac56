"""Image decoding with limits, model-input preprocessing and heatmap overlays (OpenCV)."""
