"""Online 3D multi-object tracking and offline 4D refinement (arrays in, tracks out)."""
