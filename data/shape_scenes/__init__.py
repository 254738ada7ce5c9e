"""shape_scenes dataset."""
