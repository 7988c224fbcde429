"""Anonymous feedback: untraceable, answerable, safeguarding-aware, with "you said, we did"."""
