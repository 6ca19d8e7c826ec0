"""Pitch temperatures chosen on the validation split (symbolic/README.md), shared by the
commands and ``symbolic eval``. Plain constants, no torch: the CLI's parser imports them."""

HARMONY_TEMP = 0.3  # melody->harmony: best Jaccard of 0.3 / 0.5 / 0.7 on 32 val chorales
CONTINUE_TEMP = 0.9  # continuation: pitch-class entropy closest to the real music's on val
HARMONY_CANDIDATES = 8  # melody->harmony: windows sampled, the consensus kept (symbolic.consensus)
HARMONY_CONSONANCE = 0.5  # weight of on-beat consonance with the melody in that choice
