"""The gallery: known_faces/ on disk and its encoding cache (gallery), kept in step with the disk (live)."""
