"""SpineAITraining: datasets, training, evaluation and export of SpineAI model bundles.

Companion to SpineAILib (the inference side). Heavy packages are imported inside
the functions that need them so ``spineai-train --help`` answers at once.
"""

__version__ = "0.1.0"
