"""napari integration. The only part of her2fish that may import napari, magicgui or Qt."""
