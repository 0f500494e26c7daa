"""Faces: images in and out, detection and encoding (recognize), matching, drawing. Knows no sockets."""
