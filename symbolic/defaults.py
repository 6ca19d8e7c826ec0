"""Sampling settings chosen on the validation split (symbolic/README.md), shared by the
commands and ``symbolic eval``. Plain constants, no torch: the CLI's parser imports them."""

# melody->harmony, the shipped model on the 32 val chorales with 8 candidates and W 0.5:
# temperature 0.3 / 0.5 / 0.7 gave Jaccard 0.434 / 0.427 / 0.411 (one sample: 0.3 as well)
HARMONY_TEMP = 0.3
CONTINUE_TEMP = 0.9  # continuation: pitch-class entropy closest to the real music's on val
# windows sampled, the consensus kept (symbolic.consensus): one sample 0.396 Jaccard and 0.785
# consonance on val, 8 candidates 0.434 and 0.896
HARMONY_CANDIDATES = 8
# weight of on-beat consonance with the melody in that choice: W 0.5 / 1 at temperature 0.5
# gave Jaccard 0.427 / 0.428, consonance 0.901 / 0.915 (0.5 kept: it had been chosen first)
HARMONY_CONSONANCE = 0.5
# Window context (SampleConfig.context_bars; None, the default: half the model's window, 2 of
# 4 bars): context 0 / 1 / 2 on val gave Jaccard 0.434 / 0.434 / 0.442, and the highest lower
# voice leapt over a fifth at 12.5 / 0.0 / 0.0 % of the 4-bar lines (symbolic/README.md)
# The chord tagger's weights (symbolic.guide), harmonize only: the bias on on-beat pitches and
# the expected-Jaccard term of the consensus. On the 32 val chorales (8 candidates, 0.3, W 0.5,
# context 2; unguided: Jaccard 0.442) guide 0.5 / 1 / 2 / 3 with judge 1 gave 0.569 / 0.594 /
# 0.608 / 0.602, and judge 0 / 1 / 2 with guide 2 gave 0.602 / 0.608 / 0.610: guide 2 kept, and
# judge 1, as 2 adds less than the seed noise and leaves the candidates' agreement more say
CHORD_GUIDE = 2.0
CHORD_JUDGE = 1.0
