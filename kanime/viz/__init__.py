"""Pictures: image grids and plots."""
