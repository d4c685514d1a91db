"""Model cards: what a version is, what it was trained on, how well and for whom it works."""
