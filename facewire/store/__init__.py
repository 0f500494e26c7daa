"""The gallery: its database (database, backends), the known_faces/ folder synced into it (gallery, sync),
each worker's view of it and the offline tools' copy in memory (live), encodings in and out (transfer)."""
