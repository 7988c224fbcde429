"""Feedback from children and families through the public pages (/families, /young-people)."""
