"""Item side of text2tracks: playlists -> interactions -> CF embeddings -> semantic IDs.

This package never imports torch and knows nothing of prompts.
"""
